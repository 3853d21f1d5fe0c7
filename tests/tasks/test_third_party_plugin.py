"""The example task plugin, installed from outside the repository as a user would, then run."""

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import bind_tasks, pip_install_outside, platform_beside

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "platform-sst2"

pytestmark = pytest.mark.integration  # pip installs the example, runs the platform beside it


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    return pip_install_outside(EXAMPLE, target, "platform_sst2")


def test_plugins_command_lists_the_entry_point(installed):
    result = platform_beside(["plugins"], installed)
    assert result.returncode == 0, result.stderr
    assert "sst2  [always on]  platform_sst2" in result.stdout
    assert "task sst2: SST folded to binary" in result.stdout or "task sst2:" in result.stdout


def test_allowlist_can_leave_it_out(installed):
    result = platform_beside(["plugins"], installed, PLATFORM_LOAD_PLUGINS="something-else")
    assert result.returncode == 0 and "sst2" not in result.stdout


def test_third_party_task_trains_beside_builtin_ones(installed, tmp_path, tiny_data_dir):
    out = tmp_path / "run"
    result = platform_beside([
        "run", "--tasks", "sst2,sts", "--checkpoint", "tiny", "--limit", "32", "--batch-size", "8",
        "--max-length", "32", "--epochs", "1", "--sampler", "rrobin", "--threads", "1",
        "--data-dir", str(tiny_data_dir), "--output-dir", str(out)], installed)
    assert result.returncode == 0, result.stderr[-3000:]
    best = json.loads((out / "metrics.json").read_text())["best"]
    assert 0.0 <= best["sst2"] <= 1.0 and "sts" in best
    assert "skipped" in result.stderr and "ids-sst-train.csv" in result.stderr  # neutral rows, one warning
    predictions = (out / "predictions" / "sst2-dev-output.csv").read_text().splitlines()
    assert {line.split(" , ")[1].strip() for line in predictions[1:]} <= {"0", "1"}


def test_its_label_map_folds_the_labels(installed, tiny_data_dir):
    """In this process, as the platform binds it: the plugin's label map folds the values its kind then parses."""
    import csv

    sys.path.insert(0, str(installed))
    try:
        from platform_sst2 import SST2
    finally:
        sys.path.remove(str(installed))
    from core.tasks.files import read_rows

    rows = read_rows(bind_tasks(SST2)["sst2"], tiny_data_dir / "ids-sst-dev.csv", labelled=True)
    with open(tiny_data_dir / "ids-sst-dev.csv", newline="") as handle:
        raw = {row["id"]: int(row["sentiment"]) for row in csv.DictReader(handle, delimiter="\t")}
    assert rows.labels == [int(raw[i] >= 3) for i in rows.ids]
    assert len(rows) == sum(1 for label in raw.values() if label != 2) and set(rows.labels) == {0, 1}
