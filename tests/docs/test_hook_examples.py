"""The examples of docs/hooks.md, one per extension point: each is shown there verbatim and runs here as
a plugin on a fresh plugin manager, as a third-party package's would."""

import importlib.util
import json
import re
from pathlib import Path

import attrs
import pytest
import torch

from core.build.parts import RunParts
from core.build.run import prepare
from core.cli.main import parser_for
from core.plugin.component import Component
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import Registries
from core.tasks.spec import TaskSpec
from core.train.loop import train
from studies.runner import active_spaces
from studies.space import dry_run
from tasks.sst import SST

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "hooks"
DOCS = (ROOT / "docs" / "hooks.md").read_text()


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"hook_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_with(config, *plugins):
    pm = make_plugin_manager(enabled=config.plugins)
    for plugin in plugins:
        pm.register(plugin)
    run = prepare(config, pm)
    return run, train(run)


@pytest.mark.parametrize("name", sorted(path.stem for path in EXAMPLES.glob("*.py")))
def test_every_example_is_shown_verbatim_in_the_hook_reference(name):
    code = (EXAMPLES / f"{name}.py").read_text().strip()
    shown = re.findall(r"```python\n(.*?)```", DOCS, flags=re.S)
    assert code in [block.strip() for block in shown], f"docs/hooks.md must show docs/examples/hooks/{name}.py"


def test_a_kind_of_ones_own_with_its_metric(tmp_path, tiny_config):
    rows = ["id\tsentence\ttopics", "a\tstocks fell and rain came\tmoney,weather", "b\tsunny again\tweather",
            "c\tthe bank cut rates\tmoney", "d\tnothing at all\t", "e\tstorm hits markets\tmoney,weather",
            "f\tbroken\tsports"]
    (tmp_path / "topics.csv").write_text("\n".join(rows) + "\n")
    spec = TaskSpec(name="topics", kind="multi-label", files={"train": "topics.csv", "dev": "topics.csv"},
                    text_columns=("sentence",), label_column="topics", labels=("money", "weather"))

    class Task:
        @hookimpl
        def platform_tasks(self):
            return [Component.of(spec)]

    config = attrs.evolve(tiny_config, tasks=("topics",), data_dir=str(tmp_path), limit=None, epochs=3)
    run, best = run_with(config, example("multilabel"), Task())
    assert 0.0 <= best["topics"] <= 1.0 and run.model.tasks["topics"].metrics == ("exact_match",)
    assert run.train_data["topics"].labels.tolist()[:2] == [[1.0, 1.0], [0.0, 1.0]]  # "f" (sports) was skipped
    predictions = (Path(config.output_dir) / "predictions" / "topics-dev-output.csv").read_text().splitlines()[1:]
    assert len(predictions) == 5 and all(set(line.split(" , ")[1].strip().split(",")) <= {"money", "weather", ""}
                                         for line in predictions)


def test_a_sampler_of_ones_own(tiny_config):
    sampler = example("sequential_sampler")
    plan = sampler.Sequential(None, {"sst": 10, "sts": 5}, 4, 0, 1).plan(0)
    assert [step[0][0] for step in plan] == ["sst"] * 3 + ["sts"] * 2
    assert sorted(i for step in plan[:3] for i in step[0][1]) == list(range(10))
    run, best = run_with(attrs.evolve(tiny_config, tasks=("sst", "sts"), sampler="sequential", epochs=1), sampler)
    assert run.steps_per_epoch == 3 + 3 and "sst" in best and "sts" in best


def test_a_regularizer_of_ones_own_with_its_option_and_telemetry(tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = example("l2sp")
    pm = make_plugin_manager(enabled=None)
    pm.register(module, name="l2sp")
    every_plugin_on = ["run", "--topology", "independent", "--balancer", "equal"]  # choose among several providers
    assert "--l2sp-weight" in parser_for(every_plugin_on, pm).format_help()
    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=1, components={"l2sp": {"weight": 0.5}})
    run, _ = run_with(config, module)
    assert run.regularizers["l2sp"].config.weight == 0.5
    moved = sum(((p - p0) ** 2).sum() for p, p0 in zip(run.model.encoder.parameters(), run.regularizers["l2sp"].start))
    assert moved > 0
    events = EventAccumulator(str(Path(config.output_dir) / "tensorboard")).Reload()
    assert "l2sp/sst/distance" in events.Tags()["scalars"]  # logged by the TensorBoard plugin, no hook of its own


def test_a_topology_of_ones_own(tiny_config):
    twin = attrs.evolve(SST, name="sst-twin")

    class Twin:
        @hookimpl
        def platform_tasks(self):
            return [Component.of(twin)]

    config = attrs.evolve(tiny_config, tasks=("sst", "sst-twin", "sts"), topology="tied", epochs=1)
    run, best = run_with(config, example("tied_heads"), Twin())
    assert run.model.heads["sst"] is run.model.heads["sst-twin"] and run.model.heads["sts"] is not run.model.heads["sst"]
    assert {"sst", "sst-twin", "sts"} <= set(best)


def test_a_balancer_of_ones_own(tiny_config):
    """The loss-scale example weighs each task by 1 / its running mean loss: after the first step its
    weights are the inverse of the means it recorded, it resumes them from last.pt, and TensorBoard has
    every task's weight."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from core.base.files import load

    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), epochs=1, update="summed",
                          sampler="rrobin")
    pm = make_plugin_manager(enabled=config.plugins)
    pm.register(example("loss_scale"))
    run = prepare(config, pm)
    assert type(run.balancer).__name__ == "LossScale"
    train(run)
    means = run.balancer.means
    assert set(means) == {"sst", "sts"} and all(float(mean) > 0 for mean in means.values())
    assert run.balancer.weights(["sst", "sts"], run.global_step) == {task: 1.0 / means[task] for task in means}
    saved = load(Path(config.output_dir) / "last.pt")["balancer"]["means"]
    assert {task: float(mean) for task, mean in saved.items()} == {task: float(mean) for task, mean in means.items()}
    events = EventAccumulator(str(Path(config.output_dir) / "tensorboard")).Reload()
    last = {task: events.Scalars(f"balance/weight/{task}")[-1].value for task in ("sst", "sts")}
    assert last["sst"] != last["sts"] and all(0 < weight < 100 for weight in last.values())


def test_a_search_space_of_ones_own(tiny_config):
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(example("batch_space"))
    suggested = dry_run(tiny_config, active_spaces(RunParts(tiny_config, pm)), {})
    assert {"batch_size", "max_length"} <= set(suggested) and suggested["batch_size"].plugin == "hook_example_batch_space"
    assert Registries(pm).search_spaces["batches"].help == "batch size and max length"


def test_training_loop_hooks_of_ones_own(tiny_config):
    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=2)
    run_with(config, example("journal"))
    events = [json.loads(line) for line in (Path(config.output_dir) / "journal.jsonl").read_text().splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "train_start" and kinds[-1] == "train_end"
    assert kinds.count("epoch_start") == kinds.count("epoch_end") == kinds.count("evaluate") == 2
    ends = [event for event in events if event["event"] == "epoch_end"]
    assert 0 < ends[0]["steps"] < ends[1]["steps"] and ends[1]["batches"] >= ends[1]["steps"]
    logs = [event for event in events if event["event"] == "log"]
    assert logs and all(isinstance(event["losses"]["sst"], float) for event in logs)


def test_a_kind_of_ones_own_is_listed_with_its_description():
    pm = make_plugin_manager(enabled=None)
    pm.register(example("multilabel"), name="multilabel")
    registries = Registries(pm)
    component = registries.task_kinds["multi-label"]
    assert component.plugin == "multilabel" and component.help.startswith("one sentence -> any subset")
    assert registries.metrics["exact_match"].help == "Share of sentences whose whole label set is right."


def test_a_model_transform_of_ones_own(tiny_config):
    module = example("freeze")
    pm = make_plugin_manager(enabled=None)
    pm.register(module, name="freeze")
    every_plugin_on = ["run", "--topology", "independent", "--balancer", "equal"]  # choose among several providers
    assert "--freeze-layers" in parser_for(every_plugin_on, pm).format_help()
    config = attrs.evolve(tiny_config, tasks=("sst",), epochs=1, components={"freeze": {"layers": 1}})
    pm = make_plugin_manager(enabled=())
    pm.register(module, name="freeze")
    run = prepare(config, pm)
    frozen = [*run.model.encoder.embeddings.parameters(), *run.model.encoder.encoder.layer[0].parameters()]
    before = [p.detach().clone() for p in frozen]
    in_optimizer = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in frozen} and id(run.model.encoder.encoder.layer[1].output.dense.weight) \
        in in_optimizer
    train(run)
    assert all(torch.equal(p, b) for p, b in zip(frozen, before))
