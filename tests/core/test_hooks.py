"""Every hook is documented in docs/hooks.md and exercised here by a test named ``test_hook_<name>``.

Fixture plugins are small inline classes registered on a fresh plugin manager, exactly as a
third-party plugin would be.
"""

import re
from pathlib import Path

import attrs
import pytest

from core import hookspecs, trainer
from core.assembly import plugin_manager
from core.cli import build_parser
from core.hookspecs import hookimpl
from core.plugins import Registries, make_plugin_manager
from core.tasks import SINGLE_CLASSIFICATION, TaskSpec

HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("platform_"))
DOCS = (Path(__file__).parents[2] / "docs" / "hooks.md").read_text()


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_signature(name):
    import inspect

    parameters = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    assert f"### `{name}({parameters})`" in DOCS
    assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_test(name):
    assert f"test_hook_{name}" in globals(), f"write test_hook_{name} in {__file__}"


def test_every_documented_hook_exists():
    documented = set(re.findall(r"^### `(platform_\w+)\(", DOCS, flags=re.M))
    assert documented == set(HOOKS)


# ---------------------------------------------------------------------------------------------------
# Registration hooks
# ---------------------------------------------------------------------------------------------------


def registries_with(plugin):
    pm = make_plugin_manager(enabled=(), entry_points=False)
    pm.register(plugin, name="fixture")
    return Registries(pm)


def test_hook_platform_register_tasks():
    spec = TaskSpec(name="toy", kind=SINGLE_CLASSIFICATION, files={"train": "a", "dev": "b"}, text_columns=("t",))

    class Plugin:
        @hookimpl
        def platform_register_tasks(self, register):
            register(spec)

    registries = registries_with(Plugin())
    assert registries.tasks["toy"].value is spec and registries.tasks["toy"].plugin == "fixture"
    assert {"sst", "cfimdb", "quora", "sts"} <= set(registries.tasks.names())


def test_hook_platform_register_samplers():
    class Plugin:
        @hookimpl
        def platform_register_samplers(self, register):
            register("rrobin", object)

    with pytest.raises(ValueError, match="sampler 'rrobin' is registered twice: by plugin 'samplers' and by plugin 'fixture'"):
        registries_with(Plugin())


def test_hook_platform_register_regularizers():
    @attrs.frozen
    class Settings:
        weight: float = attrs.field(default=1.0, metadata={"help": "how much"})

    class Plugin:
        @hookimpl
        def platform_register_regularizers(self, register):
            register("l2", lambda config, model: None, config=Settings, help="an L2 penalty")

    entry = registries_with(Plugin()).regularizers["l2"]
    assert entry.config is Settings and entry.help == "an L2 penalty"


def test_hook_platform_register_topologies():
    class Plugin:
        @hookimpl
        def platform_register_topologies(self, register):
            register("flat", lambda config, tasks, hidden, dropout: None)

    assert set(registries_with(Plugin()).topologies.names()) == {"independent", "flat"}


def test_hook_platform_register_maskers():
    """A plugin's masker is looked up by name; the host keeps special tokens out of whatever it chooses."""
    import torch

    from core.masking import ReplacementRule, Vocabulary, mask_sequence
    from core.mlm import IGNORED

    class Everything:
        static = False

        def __init__(self, config):
            self.config = config

        def select(self, ids, candidates, word_starts, rate, generator):
            return torch.ones_like(candidates)  # every position, special tokens included

    class Plugin:
        @hookimpl
        def platform_register_maskers(self, register):
            register("everything", Everything, help="predict every token")

    entry = registries_with(Plugin()).maskers["everything"]
    assert entry.plugin == "fixture" and entry.help == "predict every token"
    vocab = Vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##c"], (0, 1, 2, 3, 4), 4, 0)
    ids = torch.tensor([2, 5, 6, 7, 3])
    inputs, labels = mask_sequence(entry.value(None), ids, vocab, ReplacementRule(rate=0.5, mask=1.0, random=0.0),
                                   torch.Generator().manual_seed(0))
    assert labels.tolist() == [IGNORED, 5, 6, 7, IGNORED] and inputs.tolist() == [2, 4, 4, 4, 3]
    assert {"dynamic", "static", "whole-word", "span"} <= set(registries_with(Plugin()).maskers.names())


def test_hook_platform_register_search_spaces():
    def space(trial, base):
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True)}

    class Plugin:
        @hookimpl
        def platform_register_search_spaces(self, register):
            register("lr", space)

    assert registries_with(Plugin()).search_spaces["lr"].value is space


def test_hook_platform_add_cli_options():
    class Plugin:
        @hookimpl
        def platform_add_cli_options(self, command, parser):
            if command == "run":
                parser.add_argument("--fixture-flag", default="off")

    pm = make_plugin_manager(enabled=None, entry_points=False)
    pm.register(Plugin(), name="fixture")
    parser, _ = build_parser(pm)
    assert parser.parse_args(["run", "--fixture-flag", "on"]).fixture_flag == "on"


# ---------------------------------------------------------------------------------------------------
# Loop hooks: one tiny run, recorded by a fixture plugin
# ---------------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def platform_on_train_start(self, run):
        self.calls.append(("train_start", run.epoch))

    @hookimpl
    def platform_on_epoch_start(self, run, epoch):
        self.calls.append(("epoch_start", epoch))

    @hookimpl
    def platform_on_before_backward(self, run, task, loss, terms):
        assert loss.requires_grad and terms["loss"] == pytest.approx(loss.item())
        self.calls.append(("before_backward", task))

    @hookimpl
    def platform_on_after_step(self, run, step, losses):
        self.calls.append(("after_step", step, tuple(sorted(losses))))

    @hookimpl
    def platform_on_evaluate_end(self, run, split, metrics):
        self.calls.append(("evaluate_end", split, tuple(sorted(metrics))))

    @hookimpl
    def platform_on_epoch_end(self, run, epoch, metrics):
        assert (run.output_dir / "best.pt").exists()
        self.calls.append(("epoch_end", epoch))

    @hookimpl
    def platform_on_train_end(self, run, metrics):
        assert (run.output_dir / "predictions" / "sst-dev-output.csv").exists()
        self.calls.append(("train_end", tuple(sorted(metrics))))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, data_dir):
    from core.config import RunConfig

    config = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", limit=16, batch_size=8, max_length=24, epochs=2,
                       sampler="rrobin", data_dir=str(data_dir), threads=1,
                       output_dir=str(tmp_path_factory.mktemp("hooks") / "run"))
    recorder = Recorder()
    pm = plugin_manager(config)
    pm.register(recorder, name="recorder")
    trainer.train(trainer.prepare(config, pm))
    return recorder.calls


def test_hook_platform_on_train_start(recorded):
    assert recorded[0] == ("train_start", 0)


def test_hook_platform_on_epoch_start(recorded):
    assert [c for c in recorded if c[0] == "epoch_start"] == [("epoch_start", 0), ("epoch_start", 1)]


def test_hook_platform_on_before_backward(recorded):
    tasks = [c[1] for c in recorded if c[0] == "before_backward"]
    assert tasks == ["sst", "sts"] * 4  # rrobin: 2 steps per epoch, both tasks each step, 2 epochs


def test_hook_platform_on_after_step(recorded):
    steps = [c for c in recorded if c[0] == "after_step"]
    assert [c[1] for c in steps] == [1, 2, 3, 4] and all(c[2] == ("sst", "sts") for c in steps)


def test_hook_platform_on_evaluate_end(recorded):
    evaluations = [c for c in recorded if c[0] == "evaluate_end"]
    assert evaluations == [("evaluate_end", "dev", ("mean", "sst", "sts"))] * 2


def test_hook_platform_on_epoch_end(recorded):
    ends = [i for i, c in enumerate(recorded) if c[0] == "epoch_end"]
    assert len(ends) == 2 and recorded[ends[0] - 1][0] == "evaluate_end"


def test_hook_platform_on_train_end(recorded):
    assert recorded[-1] == ("train_end", ("epoch", "mean", "sst", "sts"))
