"""Smoke test of benchmarks/balancers.py at toy scale (tiny random-init encoder, one timed step per
balancer, each in a process of its own): the table's rows and that every figure is positive; never a
timing target."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "balancers.py"

pytestmark = pytest.mark.integration  # the script runs every balancer in a process of its own


def test_prints_each_balancers_cost_next_to_equal_weighting(tiny_data_dir, tmp_path):
    out = tmp_path / "balancers.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", "tiny", "--steps", "1", "--batch-size", "4",
                             "--max-length", "24", "--threads", "1", "--balancers", "rlw,famo", "--data-dir",
                             str(tiny_data_dir), "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert list(rows) == ["equal", "rlw", "famo"]  # equal first: the base of the ratios
    assert rows["famo"][0] == "gradient" and rows["rlw"][0] == "loss"
    assert rows["equal"][2] == "1.00" and rows["equal"][4] == "1.00"
    assert all(float(x) > 0 for row in rows.values() for x in row[1:])
    figures = json.loads(out.read_text())
    assert set(figures) == {"equal", "rlw", "famo"} and all(f["seconds_per_step"] > 0 for f in figures.values())
