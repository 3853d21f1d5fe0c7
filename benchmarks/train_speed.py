"""Training and evaluation throughput of the platform next to transformers' BertModel, on this machine.

Every configuration trains the same checkpoint on the same pool of CS224N train examples (loaded by
``core.assembly.load_data``), at the same batch size, for the same number of optimizer steps after the
same warm-up, one after the other in this process; then each runs again alone in a child process
(``--only TASK/NAME``) for a peak RSS of its own. benchmarks/README.md explains every row.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
from functools import partial
from pathlib import Path

import attrs
import torch
import torch.nn.functional as F
from torch import nn

from core import assembly, trainer
from core.config import DEFAULT_LR, RunConfig
from core.data import make_batch, resolve_data_dir
from core.evaluation import predict_split
from core.memory import peak_rss_mb
from core.model import BertModel as PlatformBert
from core.pretrained import resolve_checkpoint
from core.taskfiles import read_rows

EVAL_TASK = "sst"
LABELS = {"platform": "(a) platform, bucketed", "platform-fp32": "(a) platform, bucketed, fp32",
          "platform-random": "(a) platform, random batches", "platform-smart": "(a) platform + smart",
          "hf-collator": "(b) transformers + collator", "hf-batches": "(c) transformers, platform batches",
          "eval-platform": "eval: platform predict_split", "eval-platform-fp32": "eval: platform, fp32",
          "eval-hf": "eval: transformers + collator"}
TRAIN = tuple(name for name in LABELS if not name.startswith("eval"))
EVAL = tuple(name for name in LABELS if name.startswith("eval"))
MATMULS = {"2048x384@384x1536": (2048, 384, 1536), "1024x1024@1024x1024": (1024, 1024, 1024)}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}

# --------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------


def figures(seconds: float, steps: int, examples: int, real: int, padded: int, precision: str) -> dict:
    return {"precision": precision, "steps": steps, "seconds": seconds, "step_seconds": seconds / steps, "examples_per_s": examples / seconds,
            "real_tokens_per_s": real / seconds, "padded_tokens_per_s": padded / seconds,
            "real_fraction": real / padded, "peak_rss_mb": peak_rss_mb()}


def timed(steps: int, one_step, precision: str) -> dict:
    """``one_step(i)`` for ``i < steps`` once untimed, then again on the clock: the same batches twice.
    The untimed pass takes the one-time costs of a run (oneDNN creates kernels for each new sequence
    length, the allocator grows), so the clock sees steady-state steps. Each call returns the
    (examples, real tokens, padded tokens) it processed."""
    for i in range(steps):
        one_step(i)
    totals, start = [0, 0, 0], time.perf_counter()
    for i in range(steps):
        totals = [t + n for t, n in zip(totals, one_step(i))]
    return figures(time.perf_counter() - start, steps, *totals, precision)


def plan_counts(data, indices: list[int]) -> tuple[int, int, int]:
    """What ``make_batch`` builds of ``indices``: every text column padded to the longest sequence."""
    lengths = [len(column[i]) for column in data.sequences for i in indices]
    return len(indices), sum(lengths), len(lengths) * max(lengths)


def encoding_counts(encodings: list[dict]) -> tuple[int, int]:
    return sum(int(e["attention_mask"].sum()) for e in encodings), sum(e["input_ids"].numel() for e in encodings)


# --------------------------------------------------------------------------------------------------
# The platform
# --------------------------------------------------------------------------------------------------


def prepare(args, task: str, tmp: str, **changes) -> trainer.RunContext:
    """A one-task platform run; its train split is a pool of at least one full bucketing window."""
    pool = max(args.steps, RunConfig().length_window) * args.batch_size
    return trainer.prepare(RunConfig(tasks=(task,), checkpoint=args.checkpoint, batch_size=args.batch_size,
                                     eval_batch_size=args.eval_batch_size, limit=pool, data_dir=args.data_dir,
                                     output_dir=str(Path(tmp) / "run"), log_every=10**9, **changes))  # no logging


def platform_train(args, task: str, tmp: str, **changes) -> dict:
    run = prepare(args, task, tmp, **changes)
    plan, data = trainer.epoch_plan(run, 0), run.train_data[task]
    run.model.train()

    def one_step(i):
        step = plan[i % len(plan)]
        trainer.train_step(run, step)
        run.global_step += 1
        return plan_counts(data, step[0][1])

    return timed(args.steps, one_step, run.model.precision)


def dev_split(run: trainer.RunContext):
    return assembly.load_data(attrs.evolve(run.config, limit=None), run.model.tasks, run.tokenizer, "dev")[EVAL_TASK]


def platform_eval(args, task: str, tmp: str, **changes) -> dict:
    run = prepare(args, EVAL_TASK, tmp, **changes)
    dev, size, pad = dev_split(run), args.eval_batch_size, run.tokenizer.pad
    predict_split(run.model, dev, pad, size, progress=False)  # the untimed pass
    start = time.perf_counter()
    predict_split(run.model, dev, pad, size, progress=False)
    seconds = time.perf_counter() - start
    ordered = sorted(dev.lengths, reverse=True)  # predict_split's batches: longest first
    padded = sum(len(ordered[i:i + size]) * ordered[i] for i in range(0, len(ordered), size))
    return figures(seconds, -(-len(dev) // size), len(dev), sum(dev.lengths), padded, run.model.precision)


# --------------------------------------------------------------------------------------------------
# transformers, as its user writes the same model
# --------------------------------------------------------------------------------------------------


class HFModel(nn.Module):
    """transformers' BertModel with the platform's default heads: mean pooling, then dropout -> linear
    (SST: 5 classes) or SBERT's [u; v; |u - v|] -> dropout -> linear (Quora: one logit)."""

    def __init__(self, encoder: nn.Module, pair: bool, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder, self.pair = encoder, pair
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(encoder.config.hidden_size * (3 if pair else 1), num_labels)

    def embed(self, encoding: dict) -> torch.Tensor:
        hidden = self.encoder(**encoding).last_hidden_state  # (B, T, H)
        mask = encoding["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)

    def forward(self, *encodings: dict) -> torch.Tensor:
        """One encoding per text column, or a single one with both pair sentences stacked (platform batches)."""
        vectors = [self.embed(e) for e in encodings]
        if self.pair:
            u, v = vectors if len(vectors) == 2 else vectors[0].chunk(2)
            vectors = [torch.cat([u, v, (u - v).abs()], dim=-1)]  # (B, 3H)
        return self.out(self.dropout(vectors[0]))


def hf_model(args, task) -> HFModel:
    from transformers import BertConfig, BertModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    source = resolve_checkpoint(args.checkpoint)
    if source.folder is not None:
        encoder = BertModel.from_pretrained(str(source.folder), attn_implementation="sdpa")
    else:  # a random-init preset: the same shape, transformers' own init
        encoder = BertModel(BertConfig(**source.config.to_dict(), attn_implementation="sdpa"))
    return HFModel(encoder, task.kind.head_input == "pair", task.spec.num_labels)


def hf_loader(args, data, shuffle: bool, batch_size: int) -> torch.utils.data.DataLoader:
    """BertTokenizerFast on the raw texts of ``data``'s examples; DataCollatorWithPadding per text column."""
    from transformers import BertTokenizerFast, DataCollatorWithPadding

    source, task = resolve_checkpoint(args.checkpoint), data.task
    tokenizer = (BertTokenizerFast.from_pretrained(str(source.folder)) if source.folder is not None else
                 BertTokenizerFast(vocab_file=str(source.vocab), do_lower_case=source.lowercase))
    rows = read_rows(task, resolve_data_dir(args.data_dir) / task.spec.files[data.split], labelled=True)
    position = {example: i for i, example in enumerate(rows.ids)}
    rows = rows.select([position[example] for example in data.ids])  # the --limit sample the platform took
    assert rows.ids == data.ids, "transformers must see the platform's examples"
    columns = [tokenizer([t or "" for t in texts], truncation=True, max_length=RunConfig().max_length)
               for texts in rows.texts]
    features = [[{key: column[key][i] for key in column.keys()} for column in columns] for i in range(len(data))]
    collator = DataCollatorWithPadding(tokenizer)

    def collate(indices):
        return [collator([features[i][k] for i in indices]) for k in range(len(columns))], data.labels[indices]

    return torch.utils.data.DataLoader(range(len(data)), batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(0))


def hf_train(args, task: str, tmp: str, platform_batches: bool) -> dict:
    run = prepare(args, task, tmp)
    plan, data, pad = trainer.epoch_plan(run, 0), run.train_data[task], run.tokenizer.pad
    del run  # the platform's model goes before transformers' loads: the peak RSS counts one model
    gc.collect()
    model, spec = hf_model(args, data.task).train(), data.task.spec
    optimizer = torch.optim.AdamW(model.parameters(), lr=DEFAULT_LR["finetune"])
    loader = None if platform_batches else hf_loader(args, data, shuffle=True, batch_size=args.batch_size)
    batches = None

    def one_step(i):
        nonlocal batches
        if platform_batches:  # (c): the platform's Batch tensors, both pair sentences in one forward
            batch = make_batch(data, plan[i % len(plan)][0][1], pad)
            keys = ("input_ids", "token_type_ids", "attention_mask")
            encodings, labels = [{key: getattr(batch, key) for key in keys}], batch.labels
        else:  # (b): shuffled batches, each pair sentence padded and encoded on its own
            if i == 0:  # each pass: the same shuffled order, collated as the steps go
                loader.sampler.generator.manual_seed(0)
                batches = iter(loader)
            encodings, labels = next(batches)
        output = model(*encodings)
        if spec.num_labels == 1:
            loss = F.binary_cross_entropy_with_logits(output.view(-1), labels.float())
        else:
            loss = F.cross_entropy(output, labels.long())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return len(labels), *encoding_counts(encodings)

    return timed(args.steps, one_step, "fp32")


def hf_eval(args, task: str, tmp: str) -> dict:
    run = prepare(args, EVAL_TASK, tmp)
    dev = dev_split(run)
    del run
    gc.collect()
    model = hf_model(args, dev.task).eval()
    loader = hf_loader(args, dev, shuffle=False, batch_size=args.eval_batch_size)
    with torch.inference_mode():
        for encodings, _ in loader:  # the untimed pass
            model(*encodings)
        totals, start = [0, 0, 0], time.perf_counter()
        for encodings, labels in loader:
            model(*encodings).argmax(-1)
            totals = [t + n for t, n in zip(totals, (len(labels), *encoding_counts(encodings)))]
        return figures(time.perf_counter() - start, len(loader), *totals, "fp32")


MEASURES = {"platform": platform_train, "platform-fp32": partial(platform_train, precision="fp32"),
            "platform-random": partial(platform_train, length_window=1),
            "platform-smart": partial(platform_train, plugins=("smart",)),
            "hf-collator": partial(hf_train, platform_batches=False),
            "hf-batches": partial(hf_train, platform_batches=True), "eval-platform": platform_eval,
            "eval-platform-fp32": partial(platform_eval, precision="fp32"), "eval-hf": hf_eval}

# --------------------------------------------------------------------------------------------------
# The machine's limit, running, reporting
# --------------------------------------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of each shape in MATMULS in ``dtype``, from its fastest of ``repeats`` runs."""
    rates = {}
    for name, (m, k, n) in MATMULS.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        rates[name] = 2 * m * k * n / min(timeit.repeat(lambda: a @ b, number=1, repeat=repeats + 1)) / 1e9  # noqa: B023
    return rates


def non_embedding_parameters(checkpoint: str) -> int:
    """Parameters of the transformer layers (no embeddings, no pooler): the N of 6·N FLOPs per token."""
    with torch.device("meta"):  # shapes only, no memory
        encoder = PlatformBert(resolve_checkpoint(checkpoint).config)
    return sum(p.numel() for p in encoder.encoder.parameters())


def measure(args, name: str) -> dict:
    task, kind = name.split("/")
    with tempfile.TemporaryDirectory() as tmp:
        return MEASURES[kind](args, task, tmp)


def alone(args, name: str) -> dict:
    """``name`` measured again in a fresh process (``--only``), for a peak RSS of its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--only", name, "--json", str(out), "--checkpoint", args.checkpoint,
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--eval-batch-size",
                   str(args.eval_batch_size), "--threads", str(args.threads), "--tasks", ",".join(args.tasks)]
        child = subprocess.run(command + (["--data-dir", args.data_dir] if args.data_dir else []),
                               capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(f"--only {name} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarize(args, results: dict) -> dict:
    def of(task, kind, key="real_tokens_per_s"):
        return results[f"{task}/{kind}"][key]

    ratios = {task: {"platform / (b) transformers + collator": of(task, "platform") / of(task, "hf-collator"),
                     "platform fp32 / (b) transformers + collator": of(task, "platform-fp32") / of(task, "hf-collator"),
                     "platform / (c) transformers, platform batches": of(task, "platform") / of(task, "hf-batches"),
                     "platform fp32 / (c) transformers, platform batches": (of(task, "platform-fp32") /
                                                                            of(task, "hf-batches")),
                     "bucketed / random batches (bucketing lever)": of(task, "platform") / of(task, "platform-random"),
                     "smart step time / plain step time": (of(task, "platform-smart", "step_seconds") /
                                                           of(task, "platform", "step_seconds"))}
              for task in args.tasks}
    eval_ratios = {kind: of(EVAL_TASK, kind, "examples_per_s") / of(EVAL_TASK, "eval-hf", "examples_per_s")
                   for kind in ("eval-platform", "eval-platform-fp32")}
    params = non_embedding_parameters(args.checkpoint)
    gflops = {name: matmul_gflops(dtype) for name, dtype in PRECISIONS.items()}
    ceilings = {name: max(rates.values()) * 1e9 / (6 * params) for name, rates in gflops.items()}
    # each platform row against the ceiling of its own precision, and against the fp32 ceiling
    share = {task: {kind: {f"{tokens} tokens / {ceiling} ceiling": of(task, kind, f"{tokens}_tokens_per_s") / ceilings[ceiling]
                           for tokens in ("real", "padded")
                           for ceiling in dict.fromkeys((of(task, kind, "precision"), "fp32"))}
                    for kind in ("platform", "platform-fp32")}
             for task in args.tasks}
    return {"ratios": ratios, "eval_ratio": eval_ratios["eval-platform"],
            "eval_ratio_fp32": eval_ratios["eval-platform-fp32"], "machine": {
                "matmul_gflops": gflops, "best_gflops": {name: max(r.values()) for name, r in gflops.items()},
                "threads": args.threads, "non_embedding_parameters": params, "ceiling_tokens_per_s": ceilings,
                "platform_share_of_ceiling": share}}


def print_report(args, results: dict, summary: dict) -> None:
    print(f"\ncheckpoint {args.checkpoint}, batch size {args.batch_size} (eval {args.eval_batch_size}), "
          f"{args.steps} timed steps after an untimed pass over the same batches, {args.threads} thread(s); RSS: peak MB; "
          "prec.: precision of the matrix multiplies (bf16: autocast, float32 weights)\n")
    print(f"{'task':<6} {'configuration':<34} {'prec.':<5} {'steps':>5} {'ex/s':>8} {'real tok/s':>10} "
          f"{'pad tok/s':>10} {'real %':>6} {'s/step':>7} {'RSS alone':>9} {'RSS cum.':>9}")
    for name, r in results.items():
        task, kind = name.split("/")
        rss = f"{r['alone_rss_mb']:>9.0f}" if "alone_rss_mb" in r else f"{'-':>9}"
        print(f"{task:<6} {LABELS[kind]:<34} {r['precision']:<5} {r['steps']:>5} {r['examples_per_s']:>8.1f} "
              f"{r['real_tokens_per_s']:>10.0f} {r['padded_tokens_per_s']:>10.0f} {100 * r['real_fraction']:>6.1f} "
              f"{r['step_seconds']:>7.3f} {rss} {r['cumulative_rss_mb']:>9.0f}")
    machine, tasks = summary["machine"], args.tasks
    print(f"\n{'ratios (real tokens/s unless said)':<62}" + "".join(f"{task:>9}" for task in tasks))
    for label in summary["ratios"][tasks[0]]:
        print(f"{label:<62}" + "".join(f"{summary['ratios'][task][label]:>9.2f}" for task in tasks))
    print(f"{f'eval: platform / transformers ({EVAL_TASK} dev ex/s)':<62}{summary['eval_ratio']:>9.2f}")
    print(f"{f'eval: platform fp32 / transformers ({EVAL_TASK} dev ex/s)':<62}{summary['eval_ratio_fp32']:>9.2f}")
    print()
    for precision, rates in machine["matmul_gflops"].items():
        listed = ", ".join(f"{name} {rate:.1f}" for name, rate in rates.items())
        print(f"{precision} matmul GFLOP/s: {listed} (best {machine['best_gflops'][precision]:.1f}); "
              f"ceiling: {machine['best_gflops'][precision]:.1f} GFLOP/s / (6 x "
              f"{machine['non_embedding_parameters'] / 1e6:.2f}M non-embedding parameters) = "
              f"{machine['ceiling_tokens_per_s'][precision]:.0f} tokens/s")
    print(f"{'share of the ceiling':<62}" + "".join(f"{task:>9}" for task in tasks))
    share = machine["platform_share_of_ceiling"]
    for kind in ("platform", "platform-fp32"):
        for label in share[tasks[0]][kind]:
            row = f"  {LABELS[kind]}: {label}"
            print(f"{row:<62}" + "".join(f"{share[task][kind][label]:>9.2f}" for task in tasks))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Training and evaluation throughput: platform vs transformers.")
    parser.add_argument("--checkpoint", default="minilm-l6", help="a folder, minilm-l6, or tiny/small (random init)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps (after an untimed pass over the same batches)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (examples)")
    parser.add_argument("--eval-batch-size", type=int, default=RunConfig().eval_batch_size, help="evaluation batch size")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads, set once (default: all cores)")
    parser.add_argument("--tasks", default="sst,quora", help="comma-separated classification tasks: sst, cfimdb, quora")
    parser.add_argument("--data-dir", default=None, help="CS224N data folder (default: the platform's)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--no-isolate", dest="isolate", action="store_false",
                        help="skip the child process per configuration (no 'RSS alone' column)")
    parser.add_argument("--only", metavar="TASK/NAME", help="measure one configuration and write it to --json (how "
                        f"the 'RSS alone' column is made); NAME: one of {', '.join(LABELS)}")
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not args.tasks or not set(args.tasks) <= {"sst", "cfimdb", "quora"}:
        parser.error(f"--tasks: {args.tasks or 'none given'}; the heads here cover sst, cfimdb and quora")
    if min(args.steps, args.batch_size, args.eval_batch_size, args.threads) < 1:
        parser.error("--steps, --batch-size, --eval-batch-size and --threads must be positive")
    if args.only and (args.json is None or args.only.partition("/")[2] not in MEASURES):
        parser.error(f"--only TASK/NAME needs --json, and NAME one of {', '.join(MEASURES)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only:
        args.json.write_text(json.dumps(measure(args, args.only)))
        return
    names = [f"{task}/{kind}" for task in args.tasks for kind in TRAIN] + [f"{EVAL_TASK}/{kind}" for kind in EVAL]
    results = {}
    for name in names:
        print(f"measuring {name}", file=sys.stderr, flush=True)
        results[name] = measure(args, name)
        results[name]["cumulative_rss_mb"] = results[name].pop("peak_rss_mb")
    for name in names if args.isolate else ():
        print(f"measuring {name} alone, for its peak RSS", file=sys.stderr, flush=True)
        results[name]["alone_rss_mb"] = alone(args, name)["peak_rss_mb"]
    summary = summarize(args, results)
    print_report(args, results, summary)
    if args.json:
        settings = {**vars(args), "json": str(args.json)}
        args.json.write_text(json.dumps({"settings": settings, "results": results, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
