"""Smoke test of benchmarks/lora.py at toy scale (the tiny encoder, one timed step): the table it prints
and the figures it writes, every one positive, and LoRA's optimizer state the size of its adapters and
head; never a timing target."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lora.py"

pytestmark = pytest.mark.integration  # runs the script in a process of its own


def test_prints_time_per_step_and_adamw_state_of_full_fine_tuning_and_lora(tiny_data_dir, tmp_path):
    out = tmp_path / "lora.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--checkpoints", "tiny", "--steps", "1", "--threads", "1",
                             "--batch-size", "4", "--data-dir", str(tiny_data_dir), "--json", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["checkpoint"] and "s/step" in line and "AdamW state" in line for line in lines)
    header = next(i for i, line in enumerate(lines) if line.startswith("lora / full"))
    rows = [line.split() for line in lines[:header] if line.startswith("tiny ")]
    assert [row[1] for row in rows] == ["full", "lora"] and all(float(row[3]) > 0 for row in rows)
    ratios = next(line.split() for line in lines[header:] if line.startswith("tiny "))
    assert float(ratios[1]) > 0 and 0 < float(ratios[2]) < 0.01  # LoRA's AdamW state: under 1% of full's on tiny

    figures = json.loads(out.read_text())["results"]["tiny"]
    full, lora = figures["full"], figures["lora"]
    assert full["trainable_parameters"] == full["parameters"] and 0 < lora["trainable_parameters"] < full["parameters"]
    # two float32 moments per trainable parameter that got a gradient (with mean pooling, the pooler gets none)
    assert lora["optimizer_state_bytes"] == 2 * 4 * lora["trainable_parameters"]
    assert 0.99 < full["optimizer_state_bytes"] / (2 * 4 * full["trainable_parameters"]) <= 1
    assert all(method["step_seconds"] > 0 and method["examples_per_s"] > 0 for method in (full, lora))
