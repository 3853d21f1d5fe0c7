"""Smoke test of benchmarks/train_speed.py at toy scale (tiny random-init encoder, one timed step).

It checks the structure of what the command prints and writes, and that every figure is positive;
never a timing target. Each run is bounded at 60 s; on an idle 2-core machine they take ~35 s in all.
The GPU mode (``--device cuda``) runs where a CUDA GPU exists; elsewhere its refusal is checked.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_speed.py"
TOY = ["--checkpoint", "tiny", "--steps", "1", "--threads", "1", "--tasks", "sst", "--batch-size", "4",
       "--eval-batch-size", "64"]
NUMBER = r"(\d+(?:\.\d+)?)"

pytestmark = pytest.mark.integration  # each test runs the script in a process of its own


def run_script(data_dir: Path, *extra: str) -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), *TOY, "--data-dir", str(data_dir), *extra],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_prints_the_table_and_the_ratios(tiny_data_dir, tmp_path):
    # --no-isolate: the child process per configuration would take this past 60 s; --only is tested below
    out = tmp_path / "speed.json"
    lines = run_script(tiny_data_dir, "--no-isolate", "--json", str(out)).splitlines()
    header = next(line for line in lines if line.startswith("task "))
    for column in ("configuration", "prec.", "steps", "ex/s", "real tok/s", "pad tok/s", "real %", "s/step",
                   "RSS alone", "RSS cum."):
        assert column in header
    labels = ("(a) platform, bucketed", "(a) platform, bucketed, fp32", "(a) platform, random batches",
              "(a) platform + smart", "(b) transformers + collator", "(c) transformers, platform batches",
              "eval: platform predict_split", "eval: platform, fp32", "eval: transformers + collator")
    for label in labels:
        row = next(line for line in lines if re.match(rf"sst\s+{re.escape(label)}\s+(fp32|bf16)\s", line))
        precision, *figures = row.split(label)[1].split()
        figures = [float(x) for x in figures if x != "-"]
        assert precision in ("fp32", "bf16") and len(figures) == 7 and all(x > 0 for x in figures), row
        assert precision == "fp32" or not label.endswith("fp32") and "transformers" not in label
    for ratio in ("platform / (b)", "platform fp32 / (b)", "platform / (c)", "platform fp32 / (c)",
                  "bucketed / random", "smart step time / plain step time", "eval: platform / transformers",
                  "eval: platform fp32 / transformers"):
        row = next(line for line in lines if line.startswith(ratio))
        assert float(re.search(NUMBER + r"\s*$", row).group(1)) > 0, row
    assert re.search(r"fp32 matmul GFLOP/s: .* ceiling: .* = \d+ tokens/s", "\n".join(lines))
    assert re.search(r"bf16 matmul GFLOP/s: .* ceiling: .* = \d+ tokens/s", "\n".join(lines))
    report = json.loads(out.read_text())
    assert len(report["results"]) == len(labels) and report["machine"]["ceiling_tokens_per_s"]["fp32"] > 0
    assert all(value > 0 for value in report["ratios"]["sst"].values()) and report["eval_ratio"] > 0
    assert report["eval_ratio_fp32"] > 0


def test_only_measures_one_configuration_in_its_own_process(tiny_data_dir, tmp_path):
    out = tmp_path / "one.json"
    assert run_script(tiny_data_dir, "--only", "sst/platform", "--json", str(out)) == ""
    figures = json.loads(out.read_text())
    assert figures["steps"] == 1 and figures["peak_rss_mb"] > 0
    assert all(figures[key] > 0 for key in ("examples_per_s", "real_tokens_per_s", "padded_tokens_per_s"))
    assert 0 < figures["real_fraction"] <= 1


def test_the_main_jobs_step_is_measured_with_its_effective_batch(tiny_data_dir, tmp_path):
    out = tmp_path / "multi.json"
    assert run_script(tiny_data_dir, "--only", "multi/platform-multitask", "--json", str(out)) == ""
    figures = json.loads(out.read_text())
    assert set(figures["batch_sizes"]) == {"sst", "quora", "sts"}  # `platform run`'s default tasks
    assert figures["examples_per_step"] == sum(figures["batch_sizes"].values()) and figures["examples_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_gpu_mode_without_a_gpu_says_so(tiny_data_dir):
    result = subprocess.run([sys.executable, str(SCRIPT), *TOY, "--data-dir", str(tiny_data_dir), "--device", "cuda"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--device cuda: no CUDA GPU is available here" in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_mode_measures_both_sides_on_the_gpu(tiny_data_dir, tmp_path):
    out = tmp_path / "gpu.json"
    lines = run_script(tiny_data_dir, "--device", "cuda", "--multitask", "--no-isolate", "--json",
                       str(out)).splitlines()
    report = json.loads(out.read_text())
    assert report["machine"]["device"].startswith("cuda") and report["settings"]["device"].startswith("cuda")
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    for name, figures in report["results"].items():
        assert figures["peak_gpu_mb"] > 0 and figures["examples_per_s"] > 0, name
        if not name.endswith("fp32"):
            assert figures["precision"] == precision, name  # transformers under the platform's autocast too
    assert "16384x384@384x1536" in report["machine"]["matmul_gflops"]["bf16"]
    assert set(report["targets"]) >= {"eval examples/s", "main job's step, examples/s"}
    assert any(line.startswith("targets of issue 15") for line in lines)
