"""The worked examples of docs/writing-a-task-plugin.md run as written: every spec binds to its kind, every
example file reads under its spec, and the kind of one's own is the code a test installs and trains."""

import re
from pathlib import Path

import pytest

from core.api import TaskSpec
from core.tasks.files import read_rows
from tests.helpers import bind_tasks

ROOT = Path(__file__).parents[2]
GUIDE = (ROOT / "docs" / "writing-a-task-plugin.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", GUIDE, flags=re.S)


def specs_with_files():
    """(spec, example file text or None) for every spec block, with the plain block right after it."""
    found = []
    for index, (language, code) in enumerate(BLOCKS):
        if language == "python" and "TaskSpec(" in code and "import" not in code:
            namespace = {"TaskSpec": TaskSpec}
            exec(code, namespace)  # a two-line declaration of the guide, nothing else
            spec = next(value for value in namespace.values() if isinstance(value, TaskSpec))
            after = BLOCKS[index + 1] if index + 1 < len(BLOCKS) else ("x", "")
            found.append((spec, after[1] if after[0] == "" else None))
    return found


SPECS = specs_with_files()


def test_the_guide_shows_every_built_in_kind():
    """A spec of each kind, but the two bi-encoder pair kinds, which the guide shows by Quora and STS."""
    from core.plugin.manager import make_plugin_manager
    from core.plugin.registries import Registries

    shown = {spec.kind for spec, _ in SPECS} | {"pair-classification", "pair-regression"}
    assert shown == set(Registries(make_plugin_manager(enabled=None)).task_kinds.names())


@pytest.mark.parametrize("spec, example", SPECS, ids=[spec.name for spec, _ in SPECS])
def test_every_spec_binds_and_reads_its_example_file(spec, example, tmp_path):
    task = bind_tasks(spec)[spec.name]
    assert task.kind.name == spec.kind
    if example is not None:
        path = tmp_path / spec.files["train"]
        path.write_text(example)
        rows = read_rows(task, path, labelled=True)
        assert len(rows) == len([line for line in example.splitlines() if line.strip()]) - 1  # no row skipped
        assert all(label is not None for label in rows.labels)


def test_the_kind_of_ones_own_registers_and_trains_on_absolute_error():
    import types

    import torch

    from core.plugin.manager import make_plugin_manager
    from core.plugin.registries import Registries

    [code] = [code for language, code in BLOCKS if language == "python" and "class SingleRegressionL1" in code]
    module = types.ModuleType("guide_kind")
    exec(code, module.__dict__)  # the guide's plugin module, as written
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(module)
    registries = Registries(pm)
    spec = TaskSpec(name="sst-score", kind="single-regression-l1", files={"train": "t", "dev": "d"},
                               text_columns=("sentence",), label_range=(0.0, 4.0), metrics=("spearman", "pearson"))
    task = registries.bind(spec)
    assert registries.task_kinds["single-regression-l1"].help.endswith("trained on absolute error")
    output, labels = torch.tensor([[0.5], [0.25]]), torch.tensor([4.0, 0.0], dtype=torch.float64)
    assert task.kind.loss(spec, output, labels).item() == pytest.approx((0.5 + 0.25) / 2)  # |0.5 - 1| and |0.25 - 0|
    assert task.metrics == ("spearman", "pearson")


def test_the_testing_example_is_the_sst2_packages_test_file():
    [code] = [code for language, code in BLOCKS if language == "python" and "train_tiny" in code]
    assert code in (ROOT / "docs" / "examples" / "platform-sst2" / "test_platform_sst2.py").read_text()
