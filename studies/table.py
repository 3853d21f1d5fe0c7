"""Plain-text tables for the terminal: what `platform study` prints (trials, the search space)."""

from __future__ import annotations

from typing import Sequence


def aligned(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` (the header first) as aligned columns, two spaces apart; the last column is left ragged,
    since it may be long."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows)
