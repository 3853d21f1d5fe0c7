"""Training and evaluation throughput of the platform next to transformers' BertModel, on this machine.

Every configuration trains the same checkpoint on the same pool of CS224N train examples (loaded by
``core.experiment.config.load_data``), at the same batch size, for the same number of optimizer steps after the
same warm-up, one after the other in this process; then each runs again alone in a child process
(``--only TASK/NAME``) for a peak RSS of its own. ``--device cuda`` measures both sides on the GPU
(the clock waits for it), transformers under the same bf16 autocast as the platform; ``--multitask``
adds the main job's three-task step. benchmarks/README.md explains every row.
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
from functools import partial
from pathlib import Path

import attrs
import torch
import torch.nn.functional as F
from clock import (
    PRECISIONS,
    encoding_counts,
    figures,
    matmul_gflops,
    non_embedding_parameters,
    plan_counts,
    synchronize,
    timed,
)
from torch import nn

from core.base.devices import DeviceError, autocast, resolve_device, resolve_precision
from core.build.run import prepare as prepare_run
from core.data.folders import resolve_data_dir
from core.encoder.loading import resolve_checkpoint
from core.experiment.config import DEFAULT_LR, RunConfig, load_data
from core.tasks.files import read_rows
from core.tasks.splits import make_batch
from core.train.context import TrainingRun
from core.train.loop import epoch_plan, train_step
from core.train.evaluation import predict_split

EVAL_TASK = "sst"
LABELS = {"platform": "(a) platform, bucketed", "platform-fp32": "(a) platform, bucketed, fp32",
          "platform-random": "(a) platform, random batches", "platform-smart": "(a) platform + smart",
          "hf-collator": "(b) transformers + collator", "hf-batches": "(c) transformers, platform batches",
          "eval-platform": "eval: platform predict_split", "eval-platform-fp32": "eval: platform, fp32",
          "eval-hf": "eval: transformers + collator", "platform-multitask": "(a) platform, main job's step"}
TRAIN = tuple(name for name in LABELS if not name.startswith("eval") and name != "platform-multitask")
EVAL = tuple(name for name in LABELS if name.startswith("eval"))
MULTITASK = "multi/platform-multitask"  # sst + quora + sts, as `platform run` trains them

# --------------------------------------------------------------------------------------------------
# The platform
# --------------------------------------------------------------------------------------------------


def prepare(args, task: str, tmp: str, **changes) -> TrainingRun:
    """A one-task platform run; its train split is a pool of at least one full bucketing window."""
    pool = max(args.steps, RunConfig().length_window) * args.batch_size
    return prepare_run(RunConfig(tasks=(task,), checkpoint=args.checkpoint, batch_size=args.batch_size,
                                 eval_batch_size=args.eval_batch_size, limit=pool, data_dir=args.data_dir,
                                 output_dir=str(Path(tmp) / "run"), log_every=10**9,  # no logging
                                 device=str(args.device), **changes))


def platform_train(args, task: str, tmp: str, **changes) -> dict:
    run = prepare(args, task, tmp, **changes)
    plan, data = epoch_plan(run, 0), run.train_data[task]
    run.model.train()

    def one_step(i):
        step = plan[i % len(plan)]
        train_step(run, step)
        run.global_step += 1
        return plan_counts(data, step[0][1])

    return timed(args, one_step, run.model.precision)


def platform_multitask(args, task: str, tmp: str) -> dict:
    """The main job's training step (`platform run`'s defaults: sst, quora and sts on their whole train
    splits, interleaved batches in proportion to the task sizes, one update per task batch) over the
    first ``--steps`` steps of its plan; ``examples_per_step`` is the effective batch."""
    run = prepare_run(RunConfig(checkpoint=args.checkpoint, batch_size=args.batch_size, data_dir=args.data_dir,
                                output_dir=str(Path(tmp) / "run"), log_every=10**9, device=str(args.device)))
    plan = epoch_plan(run, 0)
    run.model.train()

    def one_step(i):
        step = plan[i % len(plan)]
        train_step(run, step)
        run.global_step += 1
        return [sum(n) for n in zip(*(plan_counts(run.train_data[task], indices) for task, indices in step))]

    result = timed(args, one_step, run.model.precision, steps=min(args.steps, len(plan)))
    return {**result, "examples_per_step": sum(len(indices) for _, indices in plan[0]),
            "batch_sizes": {task: len(indices) for task, indices in plan[0]}}


def dev_split(run: TrainingRun):
    return load_data(attrs.evolve(run.config, limit=None), run.model.tasks, run.tokenizer, "dev")[EVAL_TASK]


def platform_eval(args, task: str, tmp: str, **changes) -> dict:
    run = prepare(args, EVAL_TASK, tmp, **changes)
    dev, size, pad = dev_split(run), args.eval_batch_size, run.tokenizer.pad
    predict_split(run.model, dev, pad, size, progress=False)  # the untimed pass
    synchronize(args.device)
    start = time.perf_counter()
    predict_split(run.model, dev, pad, size, progress=False)  # ends with its outputs on the host
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
    return HFModel(encoder, task.kind.head_input == "pair", task.spec.num_labels).to(args.device)


def on_device(args, encodings: list[dict], labels: torch.Tensor) -> tuple[list[dict], torch.Tensor]:
    return [{key: value.to(args.device) for key, value in e.items()} for e in encodings], labels.to(args.device)


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
    plan, data, pad = epoch_plan(run, 0), run.train_data[task], run.tokenizer.pad
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
        counts = len(labels), *encoding_counts(encodings)  # on the host, before the batch moves
        encodings, labels = on_device(args, encodings, labels)
        with autocast(args.device, args.hf_precision):
            output = model(*encodings).float()
        if spec.num_labels == 1:
            loss = F.binary_cross_entropy_with_logits(output.view(-1), labels.float())
        else:
            loss = F.cross_entropy(output, labels.long())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return counts

    return timed(args, one_step, args.hf_precision)


def hf_eval(args, task: str, tmp: str) -> dict:
    run = prepare(args, EVAL_TASK, tmp)
    dev = dev_split(run)
    del run
    gc.collect()
    model = hf_model(args, dev.task).eval()
    loader = hf_loader(args, dev, shuffle=False, batch_size=args.eval_batch_size)
    with torch.inference_mode(), autocast(args.device, args.hf_precision):
        for encodings, labels in loader:  # the untimed pass
            model(*on_device(args, encodings, labels)[0])
        synchronize(args.device)
        totals, start, predictions = [0, 0, 0], time.perf_counter(), []
        for encodings, labels in loader:
            totals = [t + n for t, n in zip(totals, (len(labels), *encoding_counts(encodings)))]
            predictions.append(model(*on_device(args, encodings, labels)[0]).argmax(-1))
        torch.cat(predictions).cpu()  # as predict_split, the predictions end on the host
        return figures(time.perf_counter() - start, len(loader), *totals, args.hf_precision)


MEASURES = {"platform": platform_train, "platform-fp32": partial(platform_train, precision="fp32"),
            "platform-random": partial(platform_train, length_window=1),
            "platform-smart": partial(platform_train, plugins=("smart",)),
            "hf-collator": partial(hf_train, platform_batches=False),
            "hf-batches": partial(hf_train, platform_batches=True), "eval-platform": platform_eval,
            "eval-platform-fp32": partial(platform_eval, precision="fp32"), "eval-hf": hf_eval,
            "platform-multitask": platform_multitask}

# --------------------------------------------------------------------------------------------------
# The machine's limit, running, reporting
# --------------------------------------------------------------------------------------------------


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
                   str(args.eval_batch_size), "--threads", str(args.threads), "--tasks", ",".join(args.tasks),
                   "--device", str(args.device)]
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
    gflops = {name: matmul_gflops(dtype, args.device) for name, dtype in PRECISIONS.items()}
    ceilings = {name: max(rates.values()) * 1e9 / (6 * params) for name, rates in gflops.items()}
    # each platform row against the ceiling of its own precision, and against the fp32 ceiling
    share = {task: {kind: {f"{tokens} tokens / {ceiling} ceiling": of(task, kind, f"{tokens}_tokens_per_s") / ceilings[ceiling]
                           for tokens in ("real", "padded")
                           for ceiling in dict.fromkeys((of(task, kind, "precision"), "fp32"))}
                    for kind in ("platform", "platform-fp32")}
             for task in args.tasks}
    if MULTITASK in results:
        multitask = results[MULTITASK]
        share["multi"] = {"platform-multitask": {f"{tokens} tokens / {multitask['precision']} ceiling":
                                                 multitask[f"{tokens}_tokens_per_s"] / ceilings[multitask["precision"]]
                                                 for tokens in ("real", "padded")}}
    return {"ratios": ratios, "eval_ratio": eval_ratios["eval-platform"],
            "eval_ratio_fp32": eval_ratios["eval-platform-fp32"], "targets": targets(args, results, ratios),
            "machine": {"device": str(args.device), "matmul_gflops": gflops,
                        "best_gflops": {name: max(r.values()) for name, r in gflops.items()},
                        "threads": args.threads, "non_embedding_parameters": params, "ceiling_tokens_per_s": ceilings,
                        "platform_share_of_ceiling": share}}


def targets(args, results: dict, ratios: dict) -> dict[str, dict]:
    """The GPU targets of issue 15 (one H100): the main job's step >= 5,000 examples/s, evaluation >=
    20,000 examples/s, the platform >= 3x transformers on the same batches; measured against them."""
    found = {"eval examples/s": (results[f"{EVAL_TASK}/eval-platform"]["examples_per_s"], 20_000)}
    if MULTITASK in results:
        found["main job's step, examples/s"] = (results[MULTITASK]["examples_per_s"], 5_000)
    for task in args.tasks:
        found[f"{task}: platform / (c) transformers, platform batches"] = (
            ratios[task]["platform / (c) transformers, platform batches"], 3.0)
    return {name: {"measured": value, "target": target, "met": value >= target}
            for name, (value, target) in found.items()}


def print_report(args, results: dict, summary: dict) -> None:
    print(f"\ncheckpoint {args.checkpoint} on {args.device}, batch size {args.batch_size} "
          f"(eval {args.eval_batch_size}), "
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
    for label, value in share.get("multi", {}).get("platform-multitask", {}).items():
        row = f"  {LABELS['platform-multitask']}: {label}"
        print(f"{row:<62}{value:>9.2f}")
    if MULTITASK in results:
        multitask = results[MULTITASK]
        sizes = ", ".join(f"{task} {size}" for task, size in multitask["batch_sizes"].items())
        print(f"\nmain job's step: {multitask['examples_per_step']} examples ({sizes}), one update per task batch")
    print(f"\n{'targets of issue 15 (one H100 GPU)':<62}{'measured':>9}{'target':>9}")
    for name, target in summary["targets"].items():
        print(f"{name:<62}{target['measured']:>9.2f}{target['target']:>9.0f}  {'met' if target['met'] else 'not met'}")


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
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (the platform's --device; "
                        "transformers runs there too, in bf16 autocast on a GPU with bf16)")
    parser.add_argument("--multitask", action="store_true",
                        help="also time the main job's step: sst, quora and sts as `platform run` trains them")
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
    try:
        args.device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(str(error))
    args.hf_precision = resolve_precision("auto", args.device) if args.device.type == "cuda" else "fp32"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.only:
        args.json.write_text(json.dumps(measure(args, args.only)))
        return
    names = [f"{task}/{kind}" for task in args.tasks for kind in TRAIN] + [f"{EVAL_TASK}/{kind}" for kind in EVAL]
    names += [MULTITASK] if args.multitask else []
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
        settings = {**vars(args), "json": str(args.json), "device": str(args.device)}
        args.json.write_text(json.dumps({"settings": settings, "results": results, **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
