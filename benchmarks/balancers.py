"""What each balancer costs: time per training step and peak memory, next to equal weighting.

Every balancer installed (``platform plugins`` lists them) trains the same multitask step (one batch of
every task, ``--update summed``, round-robin) for ``--steps`` timed steps after one untimed pass, each in a
process of its own so that its peak memory is its own: peak RSS on the CPU, peak allocated memory on a GPU.
The figures are this machine's; the ratios to ``equal`` are what carries over. ``make bench-balancers``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.build.parts import RunParts
from core.build.run import prepare
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import Registries
from core.experiment.config import RunConfig
from core.train.loop import epoch_plan, train_step


def installed_balancers() -> list[str]:
    registries = Registries(make_plugin_manager(enabled=None))
    return list(registries.balancers.names())


def measure(args: argparse.Namespace, balancer: str) -> dict[str, float]:
    """Time per step and peak memory of ``balancer`` on ``--steps`` steps, in this process."""
    plugins = () if balancer == "equal" else (balancer,)
    registries = Registries(make_plugin_manager(enabled=plugins))
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(tasks=tuple(args.tasks.split(",")), checkpoint=args.checkpoint, plugins=plugins,
                           balancer=balancer, update="summed", sampler="rrobin", batch_size=args.batch_size,
                           limit=args.batch_size * (args.steps + 1), max_length=args.max_length,
                           data_dir=args.data_dir, output_dir=str(Path(tmp) / "run"), log_every=10**9,
                           device=args.device, threads=args.threads)
        assert RunParts(config, registries.pm).balancer.name == balancer
        run = prepare(config)
        plan = epoch_plan(run, 0)
        run.model.train()
        device = run.model.device
        train_step(run, plan[0])  # untimed: allocations, caches
        run.global_step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        for i in range(args.steps):
            train_step(run, plan[(i + 1) % len(plan)])
            run.global_step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - started) / args.steps
        peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        run.close()
    return {"seconds_per_step": seconds, "peak_mb": peak / 2**20, "kind": "gradient" if run.balancer.gradients
            else "loss"}


def alone(args: argparse.Namespace, balancer: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--only", balancer, "--json", str(out), "--checkpoint", args.checkpoint,
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--tasks", args.tasks,
                   "--max-length", str(args.max_length), "--device", args.device, "--threads", str(args.threads)]
        child = subprocess.run(command + (["--data-dir", args.data_dir] if args.data_dir else []),
                               capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(f"balancer {balancer} failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
        return json.loads(out.read_text())


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    base = results["equal"]
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    lines = [f"balancers on {args.checkpoint}, tasks {args.tasks}, batch {args.batch_size} per task, "
             f"{args.steps} timed steps, device {args.device}",
             f"{'balancer':<12} {'kind':<9} {'s/step':>8} {'x equal':>8} {memory:>12} {'x equal':>8}"]
    for name, figures in results.items():
        lines.append(f"{name:<12} {figures['kind']:<9} {figures['seconds_per_step']:>8.3f} "
                     f"{figures['seconds_per_step'] / base['seconds_per_step']:>8.2f} {figures['peak_mb']:>12.0f} "
                     f"{figures['peak_mb'] / base['peak_mb']:>8.2f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="minilm-l6", help="a folder, minilm-l6, or tiny/small (random init)")
    parser.add_argument("--tasks", default="sst,quora,sts", help="comma-separated tasks")
    parser.add_argument("--balancers", default="", help="comma-separated balancers (default: every installed one)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after one untimed step)")
    parser.add_argument("--batch-size", type=int, default=16, help="examples per task batch")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per sequence at most")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="CPU threads")
    parser.add_argument("--data-dir", default=None, help="CS224N data folder (default: the platform's)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one balancer, in this process (a child's job)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.only:
        args.json.write_text(json.dumps(measure(args, args.only)))
        return
    names = [name for name in args.balancers.split(",") if name] or installed_balancers()
    if "equal" not in names:
        names.insert(0, "equal")
    results = {name: alone(args, name) for name in names}
    print(report(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
