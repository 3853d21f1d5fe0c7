"""The clock and the ceiling of benchmarks/train_speed.py: steady-state timing on the CPU or a GPU
(where the clock waits for the device), token counts of a batch, and the machine's matmul rate, which
bounds the tokens/s any training of the checkpoint can reach."""

from __future__ import annotations

import time
import timeit

import torch

from core.base.memory import peak_rss_mb
from core.encoder.bert import BertModel as PlatformBert
from core.encoder.loading import resolve_checkpoint

MATMULS = {"2048x384@384x1536": (2048, 384, 1536), "1024x1024@1024x1024": (1024, 1024, 1024)}
GPU_MATMULS = {"16384x384@384x1536": (16384, 384, 1536), "8192x8192@8192x8192": (8192, 8192, 8192)}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def figures(seconds: float, steps: int, examples: int, real: int, padded: int, precision: str) -> dict:
    result = {"precision": precision, "steps": steps, "seconds": seconds, "step_seconds": seconds / steps,
              "examples_per_s": examples / seconds, "real_tokens_per_s": real / seconds,
              "padded_tokens_per_s": padded / seconds, "real_fraction": real / padded, "peak_rss_mb": peak_rss_mb()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a GPU runs behind the Python that feeds it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(args, one_step, precision: str, steps: int | None = None) -> dict:
    """``one_step(i)`` for ``i < steps`` (default ``--steps``) once untimed, then again on the clock: the
    same batches twice. The untimed pass takes the one-time costs of a run (oneDNN creates kernels for
    each new sequence length, the allocator grows, CUDA loads its kernels), so the clock sees
    steady-state steps; on a GPU the clock starts and stops with the device idle. Each call returns
    the (examples, real tokens, padded tokens) it processed."""
    steps = steps or args.steps
    for i in range(steps):
        one_step(i)
    synchronize(args.device)
    totals, start = [0, 0, 0], time.perf_counter()
    for i in range(steps):
        totals = [t + n for t, n in zip(totals, one_step(i))]
    synchronize(args.device)
    return figures(time.perf_counter() - start, steps, *totals, precision)


def plan_counts(data, indices: list[int]) -> tuple[int, int, int]:
    """What ``make_batch`` builds of ``indices``: every text column padded to the longest sequence."""
    lengths = [len(column[i]) for column in data.sequences for i in indices]
    return len(indices), sum(lengths), len(lengths) * max(lengths)


def encoding_counts(encodings: list[dict]) -> tuple[int, int]:
    return sum(int(e["attention_mask"].sum()) for e in encodings), sum(e["input_ids"].numel() for e in encodings)


# --------------------------------------------------------------------------------------------------
# The machine's limit
# --------------------------------------------------------------------------------------------------


def matmul_gflops(dtype: torch.dtype, device: torch.device, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of each shape in MATMULS (on a GPU also GPU_MATMULS, large enough to fill it) in
    ``dtype`` on ``device``, from its fastest of ``repeats`` runs."""
    rates = {}
    shapes = {**MATMULS, **(GPU_MATMULS if device.type == "cuda" else {})}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device)

        def product():
            a @ b  # noqa: B023
            synchronize(device)

        product()
        rates[name] = 2 * m * k * n / min(timeit.repeat(product, number=1, repeat=repeats + 1)) / 1e9
    return rates


def non_embedding_parameters(checkpoint: str) -> int:
    """Parameters of the transformer layers (no embeddings, no pooler): the N of 6·N FLOPs per token."""
    with torch.device("meta"):  # shapes only, no memory
        encoder = PlatformBert(resolve_checkpoint(checkpoint).config)
    return sum(p.numel() for p in encoder.encoder.parameters())
