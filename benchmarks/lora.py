"""LoRA against full fine-tuning, on this machine: time per training step, trainable parameters, and the
bytes of AdamW's state (its two moments per trainable parameter), per checkpoint.

Each configuration is the platform's own training step on the same batches of one task (a ``TrainingRun``
from ``core.build.run.prepare``, its epoch plan, ``core.train.loop.train_step``), timed as
``benchmarks/train_speed.py`` times it (``clock.timed``: an untimed pass over the batches, then the same
batches on the clock). Full fine-tuning trains the whole encoder and the head; LoRA (``--plugins lora``)
freezes the encoder and trains adapters on the projections ``--targets`` names, and the head.
benchmarks/README.md explains the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from clock import plan_counts, timed

from core.base.devices import DeviceError, resolve_device
from core.build.run import prepare
from core.experiment.config import RunConfig
from core.train.loop import epoch_plan, train_step

METHODS = ("full", "lora")


def configuration(args, method: str, checkpoint: str, tmp: str) -> RunConfig:
    """A one-task run of ``checkpoint``; ``lora`` adds the plugin with the benchmark's adapter settings."""
    pool = max(args.steps, RunConfig().length_window) * args.batch_size
    lora = {"plugins": ("lora",), "components": {"lora": {"rank": args.rank, "targets": args.targets}}}
    return RunConfig(tasks=(args.task,), checkpoint=checkpoint, batch_size=args.batch_size, limit=pool,
                     data_dir=args.data_dir, output_dir=str(Path(tmp) / "run"), log_every=10**9,
                     device=str(args.device), precision=args.precision, **(lora if method == "lora" else {}))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (AdamW: exp_avg and exp_avg_sq per trained parameter)."""
    return sum(value.numel() * value.element_size() for state in optimizer.state.values()
               for value in state.values() if torch.is_tensor(value))


def measure(args, method: str, checkpoint: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare(configuration(args, method, checkpoint, tmp))
        plan, data = epoch_plan(run, 0), run.train_data[args.task]
        run.model.train()

        def one_step(i: int) -> tuple[int, int, int]:
            step = plan[i % len(plan)]
            train_step(run, step)
            run.global_step += 1
            return plan_counts(data, step[0][1])

        result = timed(args, one_step, run.model.precision)
        trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
        run.close()
        return {**result, "trainable_parameters": trainable,
                "parameters": sum(p.numel() for p in run.model.parameters()),
                "optimizer_state_bytes": optimizer_state_bytes(run.optimizer)}


def print_report(args, results: dict[str, dict[str, dict]]) -> None:
    print(f"\ntask {args.task}, batch size {args.batch_size}, {args.steps} timed steps after an untimed pass over the "
          f"same batches, {args.threads} thread(s), {args.device}; LoRA: rank {args.rank}, targets {args.targets}\n")
    print(f"{'checkpoint':<10} {'method':<6} {'prec.':<5} {'s/step':>8} {'ex/s':>8} {'trainable':>11} "
          f"{'of all':>7} {'AdamW state':>13}")
    for checkpoint, methods in results.items():
        for method, r in methods.items():
            print(f"{checkpoint:<10} {method:<6} {r['precision']:<5} {r['step_seconds']:>8.4f} "
                  f"{r['examples_per_s']:>8.1f} {r['trainable_parameters']:>11,} "
                  f"{100 * r['trainable_parameters'] / r['parameters']:>6.2f}% {r['optimizer_state_bytes']:>13,}")
    print(f"\n{'lora / full':<10} {'':<12} {'s/step':>8} {'':>8} {'':>11} {'':>7} {'AdamW state':>13}")
    for checkpoint, methods in results.items():
        lora, full = methods["lora"], methods["full"]
        print(f"{checkpoint:<10} {'':<12} {lora['step_seconds'] / full['step_seconds']:>8.3f} {'':>8} {'':>11} "
              f"{'':>7} {lora['optimizer_state_bytes'] / full['optimizer_state_bytes']:>13.4f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="LoRA against full fine-tuning: time per step, AdamW state bytes.")
    parser.add_argument("--checkpoints", default="tiny,small", help="comma-separated checkpoints: tiny, small "
                        "(random init), minilm-l6 or a folder")
    parser.add_argument("--task", default="sst", help="the task trained (sst, cfimdb, quora, sts)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps (after an untimed pass)")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size (examples)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA's rank r (--lora-rank)")
    parser.add_argument("--targets", default="query,value", help="LoRA's projections (--lora-targets)")
    parser.add_argument("--precision", default="fp32", help="fp32 or bf16 (the platform's --precision)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads, set once (default: all cores)")
    parser.add_argument("--data-dir", default=None, help="CS224N data folder (default: the platform's)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.checkpoints = [name.strip() for name in args.checkpoints.split(",") if name.strip()]
    if not args.checkpoints:
        parser.error("--checkpoints: name at least one")
    if min(args.steps, args.batch_size, args.rank, args.threads) < 1:
        parser.error("--steps, --batch-size, --rank and --threads must be positive")
    try:
        args.device = resolve_device(args.device)
    except DeviceError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict]] = {}
    for checkpoint in args.checkpoints:
        for method in METHODS:
            print(f"measuring {checkpoint} {method}", file=sys.stderr, flush=True)
            results.setdefault(checkpoint, {})[method] = measure(args, method, checkpoint)
    print_report(args, results)
    if args.json:
        settings = {**vars(args), "json": str(args.json), "device": str(args.device)}
        args.json.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
