"""A task kind from a third-party package: installed from outside the repository through the `platform`
entry-point group, listed by `platform plugins`, and trained by a tiny run."""

import json
import sys
import textwrap

import pytest
import torch

from tests.helpers import pip_install_outside, platform_beside

pytestmark = pytest.mark.integration  # pip installs the package, runs the platform beside it

MODULE = '''
"""Sentence regression trained on absolute error: a third-party task kind, and SST read as a 0-4 score."""

import torch.nn.functional as F

from core.plugin.component import Component
from core.plugin.hookspecs import hookimpl
from core.tasks.spec import TaskSpec
from plugins.standard.kinds import SingleRegression


class SingleRegressionL1(SingleRegression):
    name, description = "single-regression-l1", "one sentence -> a score, trained on absolute error"

    def loss(self, spec, output, labels):
        low, high = spec.label_range
        return F.l1_loss(output.view(-1), (labels.float() - low) / (high - low))


SST_SCORE = TaskSpec(
    name="sst-score",
    kind=SingleRegressionL1.name,
    files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    label_range=(0.0, 4.0),
    metrics=("spearman", "pearson"),
    prediction_header="Predicted_Score",
    description="SST sentiment as a 0-4 score, Spearman",
)


@hookimpl
def platform_task_kinds():
    return [Component.of(SingleRegressionL1())]


@hookimpl
def platform_tasks():
    return [Component.of(SST_SCORE)]
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "platform-l1kind"
version = "0.1.0"

[project.entry-points.platform]
l1kind = "platform_l1kind"

[tool.setuptools]
py-modules = ["platform_l1kind"]
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    package = tmp_path_factory.mktemp("platform-l1kind")
    (package / "platform_l1kind.py").write_text(textwrap.dedent(MODULE).lstrip())
    (package / "pyproject.toml").write_text(PYPROJECT.lstrip())
    target = tmp_path_factory.mktemp("site")
    return pip_install_outside(package, target, "platform_l1kind")


def test_its_loss_is_the_absolute_error(installed):
    sys.path.insert(0, str(installed))
    try:
        from platform_l1kind import SST_SCORE, SingleRegressionL1
    finally:
        sys.path.remove(str(installed))
    kind = SingleRegressionL1()
    # scores 4 and 1 on 0-4 are 1 and 0.25 scaled; outputs 0.5 and 0.25: errors 0.5 and 0
    loss = kind.loss(SST_SCORE, torch.tensor([[0.5], [0.25]]), torch.tensor([4.0, 1.0], dtype=torch.float64))
    assert loss.item() == pytest.approx(0.25)


def test_plugins_command_lists_the_kind(installed):
    result = platform_beside(["plugins"], installed)
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split("l1kind  [always on]  platform_l1kind\n")[1].split("\n")
    assert listing[:2] == ["    task kind single-regression-l1: one sentence -> a score, trained on absolute error",
                           "    task sst-score: SST sentiment as a 0-4 score, Spearman"]


def test_a_task_of_the_kind_trains(installed, tmp_path, tiny_data_dir):
    out = tmp_path / "run"
    result = platform_beside([
        "run", "--tasks", "sst-score,sts", "--checkpoint", "tiny", "--limit", "32", "--batch-size", "8",
        "--max-length", "32", "--epochs", "1", "--sampler", "rrobin", "--threads", "1",
        "--data-dir", str(tiny_data_dir), "--output-dir", str(out)], installed)
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((out / "metrics.json").read_text())["best"]
    assert best["sst-score"] == best["sst-score/spearman"] and -1.0 <= best["sst-score/pearson"] <= 1.0
    lines = (out / "predictions" / "sst-score-test-output.csv").read_text().splitlines()
    assert lines[0] == "id \t Predicted_Score " and len(lines) == 33
    assert all(len(line.split(" , ")[1].strip().partition(".")[2]) == 4 for line in lines[1:])  # scores, as floats
