"""Training throughput of `platform run` in 1, 2, ... processes (torchrun, data-parallel), on this machine.

Each count trains the same run (the same global batches) in a fresh run folder: one process with a
plain `platform run`, N with `python -m torch.distributed.run --standalone --nproc-per-node N`. The
figure is the first epoch's training examples over its training seconds, as metrics.json records
them (dev evaluation and loading are not counted). benchmarks/README.md gives measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(processes: int, options: list[str]) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "core.cli", "run", *options]


def measure(processes: int, options: list[str], folder: Path) -> dict:
    """Train in ``processes`` processes; the run's figures from its metrics.json."""
    output = folder / f"run-{processes}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}  # --standalone: gloo on loopback
    result = subprocess.run(command(processes, [*options, "--output-dir", str(output), "--epochs", "1"]), cwd=ROOT,
                            env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{processes} process(es) failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    metrics = json.loads((output / "metrics.json").read_text())
    epoch = metrics["history"][0]
    return {"processes": processes, "examples": metrics["examples_seen"], "train_seconds": epoch["train_seconds"],
            "examples_per_s": metrics["examples_seen"] / epoch["train_seconds"], "dev_mean": epoch["mean"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Other `platform run` options go after --, e.g. -- --plugins smart")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts (default: 1,2)")
    parser.add_argument("--checkpoint", default="tiny", help="the run's --checkpoint (default: tiny)")
    parser.add_argument("--tasks", default="sst,quora,sts", help="the run's --tasks (default: sst,quora,sts)")
    parser.add_argument("--limit", type=int, default=400, help="examples per task and split (default: 400)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default: 1)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args, extra = parser.parse_known_args(argv)
    extra = [option for option in extra if option != "--"]
    counts = [int(n) for n in args.processes.split(",") if n.strip()]
    if not counts or min(counts) < 1 or args.limit < 1 or args.threads < 1:
        parser.error("--processes, --limit and --threads must be positive")
    options = ["--checkpoint", args.checkpoint, "--tasks", args.tasks, "--limit", str(args.limit),
               "--threads", str(args.threads), "--device", "cpu", *extra]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, options, Path(tmp)) for n in counts]
    print(f"\n{args.checkpoint}, tasks {args.tasks}, --limit {args.limit}, {args.threads} thread(s) per process, "
          f"one epoch{' ' + ' '.join(extra) if extra else ''}")
    print(f"{'processes':>9} {'examples':>8} {'train s':>8} {'ex/s':>8} {'speed-up':>8} {'dev mean':>8}")
    for row in rows:
        print(f"{row['processes']:>9} {row['examples']:>8} {row['train_seconds']:>8.1f} {row['examples_per_s']:>8.1f} "
              f"{row['examples_per_s'] / rows[0]['examples_per_s']:>8.2f} {row['dev_mean']:>8.4f}")
    if args.json:
        args.json.write_text(json.dumps({"settings": {**vars(args), "json": str(args.json), "extra": extra},
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
