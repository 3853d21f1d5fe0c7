"""How commands print results."""

from __future__ import annotations

from typing import Any


def format_metrics(title: str, metrics: dict[str, Any]) -> str:
    """``title: sst 0.4523, quora 0.7441, ...`` (floats to four places)."""
    parts = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
    return f"{title}: " + ", ".join(parts)
