"""Where a run computes (``--device``) and in which precision (``--precision``).

``bf16`` is autocast mixed precision: matrix multiplies run in bfloat16 while weights, gradients,
optimizer state, losses and head outputs stay float32. ``auto`` picks it where the hardware does
bfloat16 matrix work natively (CUDA GPUs with bf16; x86 CPUs with AMX or AVX512-BF16, where oneDNN
runs minilm's training step about 2x faster than float32), and float32 elsewhere.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

from core.base.errors import PlatformError

PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


class DeviceError(PlatformError):
    """A --device or --precision this machine cannot honour."""


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA GPU when there is one, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA GPU is available here (torch {torch.__version__}); "
                              "use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name}: only cpu and cuda devices are supported")
    return device


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products in hardware (AMX or AVX512-BF16)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("flags")), [])
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``device``; ``auto`` is bf16 where the hardware has native bf16."""
    if name not in PRECISIONS:
        raise DeviceError(f"--precision {name!r}: expected one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward's autocast context: bfloat16 for ``bf16``, nothing for ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
