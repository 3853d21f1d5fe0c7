"""Smoke test of benchmarks/data_parallel.py at toy scale (tiny encoder, 16 examples per task): it
trains in one and in two processes and prints their rates; never a timing target."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data_parallel.py"

pytestmark = pytest.mark.integration  # the script launches one- and two-process runs


def test_one_and_two_processes_train_the_same_run(tiny_data_dir, tmp_path):
    out = tmp_path / "dp.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--limit", "16", "--json", str(out), "--",
                             "--max-length", "24", "--data-dir", str(tiny_data_dir)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processes examples  train s     ex/s speed-up dev mean" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["processes"] for row in rows] == [1, 2]
    assert rows[0]["examples"] == rows[1]["examples"] > 0 and all(row["examples_per_s"] > 0 for row in rows)
    assert rows[1]["dev_mean"] == pytest.approx(rows[0]["dev_mean"], abs=0.05)  # the same batches, own dropout
