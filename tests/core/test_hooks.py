"""Every hook is documented in docs/hooks.md and exercised here by a test named ``test_hook_<name>``.

Fixture plugins are small inline classes registered on a fresh plugin manager, exactly as a
third-party plugin would be.
"""

import re
from pathlib import Path

import attrs
import pytest
import torch

from core.build.run import prepare
from core.plugin import hookspecs
from core.plugin.component import Component
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import Registries
from core.tasks.spec import TaskSpec
from core.train.loop import train

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
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(plugin, name="fixture")
    return Registries(pm)


def test_hook_platform_tasks():
    spec = TaskSpec(name="toy", kind="single-classification", files={"train": "a", "dev": "b"}, text_columns=("t",))

    class Plugin:
        @hookimpl
        def platform_tasks(self):
            return [Component.of(spec)]

    registries = registries_with(Plugin())
    assert registries.tasks["toy"].factory is spec and registries.tasks["toy"].plugin == "fixture"
    assert {"sst", "cfimdb", "quora", "sts"} <= set(registries.tasks.names())
    assert [task.name for task in registries.tasks.defaults()] == ["quora", "sst", "sts"]  # what `run` trains by default


def test_hook_platform_task_kinds():
    from plugins.standard.kinds import SingleClassification

    class Ternary(SingleClassification):
        name, description = "ternary", "a sentence -> one of exactly three classes"

        def check(self, spec):
            super().check(spec)
            assert spec.num_labels == 3

    class Plugin:
        @hookimpl
        def platform_task_kinds(self):
            return [Component.of(Ternary())]

    registries = registries_with(Plugin())
    component = registries.task_kinds["ternary"]
    assert isinstance(component.factory, Ternary) and component.plugin == "fixture"
    assert component.help == Ternary.description
    assert {"single-classification", "pair-regression", "token-tagging"} <= set(registries.task_kinds.names())
    spec = TaskSpec(name="toy", kind="ternary", files={"train": "a", "dev": "b"}, text_columns=("t",), num_labels=3)
    assert registries.bind(spec).kind is component.factory


def test_hook_platform_metrics():
    def hits(predictions, gold):
        """How many predictions are right."""
        return float((predictions == gold).sum())

    class Plugin:
        @hookimpl
        def platform_metrics(self):
            return [Component("hits", hits)]

    registries = registries_with(Plugin())
    assert registries.metrics["hits"].factory is hits
    assert registries.metrics["hits"].help == "How many predictions are right."
    spec = TaskSpec(name="toy", kind="single-classification", files={"train": "a", "dev": "b"}, text_columns=("t",),
                    num_labels=2, metrics=("hits", "accuracy"))
    task = registries.bind(spec)
    assert task.metrics == ("hits", "accuracy")
    with pytest.raises(ValueError, match="task 'toy': unknown metric\\(s\\) hitz; available: accuracy, entity_f1"):
        registries.bind(attrs.evolve(spec, metrics=("hitz",)))


def test_hook_platform_samplers():
    """A name two plugins provide is usable by neither, and the error names both; the rest still works."""

    class Plugin:
        @hookimpl
        def platform_samplers(self):
            return [Component("rrobin", object)]

    registries = registries_with(Plugin())
    with pytest.raises(ValueError, match="sampler 'rrobin' is registered twice: by plugin 'samplers' and by plugin "
                                         "'fixture'"):
        registries.samplers["rrobin"]
    assert registries.samplers["interleaved"].default and registries.samplers.conflicts == {"rrobin": ["samplers",
                                                                                                       "fixture"]}


def test_hook_platform_regularizers():
    @attrs.frozen
    class Settings:
        weight: float = attrs.field(default=1.0, metadata={"help": "how much"})

    class Plugin:
        PLATFORM_OPT_IN = True

        @hookimpl
        def platform_regularizers(self):
            return [Component("l2", lambda settings, model: None, settings=Settings, help="an L2 penalty")]

    component = registries_with(Plugin()).regularizers["l2"]
    assert component.settings is Settings and component.help == "an L2 penalty"

    class AlwaysOn:
        @hookimpl
        def platform_regularizers(self):
            return [Component("l1", lambda settings, model: None)]

    with pytest.raises(ValueError, match="plugin 'fixture' provides regularizer 'l1' but is always on"):
        registries_with(AlwaysOn())


def test_hook_platform_model_transforms(tiny_config):
    """A transform changes the new model before it moves to its device and before the optimizer is built:
    what it adds trains, what it freezes is left out; it runs again wherever the model is rebuilt."""
    calls = []

    @attrs.frozen
    class Settings:
        scale: float = attrs.field(default=2.0, metadata={"help": "initial scale"})

    def add_scale(settings, model, config):
        calls.append((settings.scale, config.seed))
        model.encoder.embeddings.requires_grad_(False)
        model.register_parameter("scale", torch.nn.Parameter(torch.tensor(settings.scale)))

    class Plugin:
        PLATFORM_OPT_IN = True

        @hookimpl
        def platform_model_transforms(self):
            return [Component("scaled", add_scale, settings=Settings, help="a learnt scale")]

    assert registries_with(Plugin()).model_transforms["scaled"].help == "a learnt scale"
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(Plugin(), name="fixture")
    run = prepare(attrs.evolve(tiny_config, tasks=("sst",), epochs=1, components={"scaled": {"scale": 3.0}}), pm)
    assert calls == [(3.0, tiny_config.seed)] and float(run.model.scale.detach()) == 3.0
    in_optimizer = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert id(run.model.scale) in in_optimizer
    assert not in_optimizer & {id(p) for p in run.model.encoder.embeddings.parameters()}

    class AlwaysOn:
        @hookimpl
        def platform_model_transforms(self):
            return [Component("noop", lambda settings, model, config: None)]

    with pytest.raises(ValueError, match="plugin 'fixture' provides model transform 'noop' but is always on"):
        registries_with(AlwaysOn())


def test_hook_platform_topologies():
    class Plugin:
        @hookimpl
        def platform_topologies(self):
            return [Component("flat", lambda settings, tasks, widths, dropout: None)]

    registries = registries_with(Plugin())
    assert set(registries.topologies.names()) == {"independent", "flat"}
    assert [topology.name for topology in registries.topologies.defaults()] == ["independent"]


def test_hook_platform_balancers():
    class Plugin:
        @hookimpl
        def platform_balancers(self):
            return [Component("halves", lambda settings, tasks, seed: None)]

    registries = registries_with(Plugin())
    assert set(registries.balancers.names()) == {"equal", "halves"}
    assert [balancer.name for balancer in registries.balancers.defaults()] == ["equal"]


def test_hook_platform_maskers():
    """A plugin's masker is looked up by name; the host keeps special tokens out of whatever it chooses."""
    import torch

    from core.encoder.mlm import IGNORED
    from core.pretrain.masking import ReplacementRule, Vocabulary, mask_sequence

    class Everything:
        static = False

        def __init__(self, settings):
            self.settings = settings

        def select(self, ids, candidates, word_starts, rate, generator):
            return torch.ones_like(candidates)  # every position, special tokens included

    class Plugin:
        @hookimpl
        def platform_maskers(self):
            return [Component("everything", Everything, help="predict every token")]

    component = registries_with(Plugin()).maskers["everything"]
    assert component.plugin == "fixture" and component.help == "predict every token"
    vocab = Vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "##c"], (0, 1, 2, 3, 4), 4, 0)
    ids = torch.tensor([2, 5, 6, 7, 3])
    inputs, labels = mask_sequence(component.factory(None), ids, vocab, ReplacementRule(rate=0.5, mask=1.0, random=0.0),
                                   torch.Generator().manual_seed(0))
    assert labels.tolist() == [IGNORED, 5, 6, 7, IGNORED] and inputs.tolist() == [2, 4, 4, 4, 3]
    assert {"dynamic", "static", "whole-word", "span"} <= set(registries_with(Plugin()).maskers.names())


def test_hook_platform_search_spaces():
    def space(trial, base):
        return {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True)}

    class Plugin:
        @hookimpl
        def platform_search_spaces(self):
            return [Component("lr", space)]

    assert registries_with(Plugin()).search_spaces["lr"].factory is space


def test_hook_platform_commands(capsys):
    """A plugin's command, with the options of its settings class, run by `platform`."""
    from core.base.settings import field
    from core.cli.main import main, parser_for
    from core.plugin.command import Command

    @attrs.frozen
    class Settings:
        word: str = field("hello", "what to say")
        times: int = field(1, "how often")

    def say(settings, invocation):
        print(" ".join([settings.word] * settings.times))
        return 0

    class Plugin:
        @hookimpl
        def platform_commands(self):
            return [Component("say", Command(say), settings=Settings, help="say a word")]

    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(Plugin(), name="fixture")
    assert "--times" in parser_for(["say"], pm).format_help()
    assert Registries(pm).commands["say"].help == "say a word"
    assert main(["say", "--word", "hi", "--times", "2"], pm=pm) == 0
    assert capsys.readouterr().out == "hi hi\n"


def test_hook_platform_encoders(tmp_path):
    """A plugin's architecture reads the checkpoint folders whose config.json names its model_type."""
    import json

    import safetensors.torch

    from core.build.parts import Parts
    from core.encoder.bert import BERT, BertConfig, BertModel
    from core.encoder.loading import load_encoder

    architecture = attrs.evolve(BERT, prefixes=("mine.",))

    class Plugin:
        @hookimpl
        def platform_encoders(self):
            return [Component("mine", architecture, help="BERT under another name")]

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    weights = {f"mine.{key}": t for key, t in BertModel(config).state_dict().items()}
    safetensors.torch.save_file(weights, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**config.to_dict(), "model_type": "mine"}))
    (tmp_path / "vocab.txt").write_bytes(Parts((), "tiny").source.vocab.read_bytes())
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(Plugin(), name="fixture")
    parts = Parts((), str(tmp_path), pm=pm)
    assert Registries(pm).encoders["mine"].help == "BERT under another name"
    assert parts.source.architecture is architecture and parts.source.model_type == "mine"
    encoder = load_encoder(parts.source)
    assert all(torch.equal(encoder.state_dict()[key.removeprefix("mine.")], t) for key, t in weights.items())


def test_a_plugin_with_an_unknown_hook_is_refused():
    """pluggy checks every platform_ implementation against the specs: a typo is an error, not a no-op."""

    class Plugin:
        @hookimpl
        def platform_add_cli_options(self, command, parser):  # a hook that no longer exists
            pass

    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(Plugin(), name="fixture")
    with pytest.raises(Exception, match="platform_add_cli_options"):
        pm.check_pending()


# ---------------------------------------------------------------------------------------------------
# Loop hooks: one tiny run, recorded by a fixture plugin
# ---------------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls, self.losses = [], []

    @hookimpl
    def platform_on_train_start(self, run):
        self.calls.append(("train_start", run.epoch))

    @hookimpl
    def platform_on_epoch_start(self, run, epoch):
        self.calls.append(("epoch_start", epoch))

    @hookimpl
    def platform_on_before_backward(self, run, task, loss, terms):
        assert loss.requires_grad and not terms["loss"].requires_grad  # device tensors, read when logged
        assert float(terms["loss"]) == pytest.approx(loss.item())
        self.calls.append(("before_backward", task))

    @hookimpl
    def platform_on_after_optimizer_step(self, run):
        self.calls.append(("optimizer_step", run.global_step))

    @hookimpl
    def platform_on_after_step(self, run, step, losses):
        assert all(isinstance(value, torch.Tensor) and value.dim() == 0 for value in losses.values())
        self.calls.append(("after_step", step, tuple(sorted(losses))))
        self.losses.append({task: float(value) for task, value in losses.items()})

    @hookimpl
    def platform_on_log(self, run, step, losses):
        self.calls.append(("log", step, dict(losses)))

    @hookimpl
    def platform_on_evaluate_end(self, run, split, metrics):
        self.calls.append(("evaluate_end", split, tuple(sorted(metrics))))

    @hookimpl
    def platform_on_epoch_end(self, run, epoch, metrics):
        assert run.epoch == epoch and run.history[-1]["mean"] == metrics["mean"] <= run.best["mean"]
        assert epoch > 0 or not (run.output_dir / "last.pt").exists()  # what a plugin changes here gets saved
        self.calls.append(("epoch_end", epoch))

    @hookimpl
    def platform_on_train_end(self, run, metrics):
        assert (run.output_dir / "predictions" / "sst-dev-output.csv").exists()
        self.calls.append(("train_end", tuple(sorted(metrics))))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, tiny_data_dir):
    from core.experiment.config import RunConfig

    config = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", limit=16, batch_size=8, max_length=24, epochs=2,
                       sampler="rrobin", log_every=2, data_dir=str(tiny_data_dir), threads=1,
                       output_dir=str(tmp_path_factory.mktemp("hooks") / "run"))
    recorder = Recorder()
    pm = make_plugin_manager(enabled=config.plugins)
    pm.register(recorder, name="recorder")
    train(prepare(config, pm))
    return recorder.calls + [("step_losses", recorder.losses)]


def test_hook_platform_on_train_start(recorded):
    assert recorded[0] == ("train_start", 0)


def test_hook_platform_on_epoch_start(recorded):
    assert [c for c in recorded if c[0] == "epoch_start"] == [("epoch_start", 0), ("epoch_start", 1)]


def test_hook_platform_on_before_backward(recorded):
    tasks = [c[1] for c in recorded if c[0] == "before_backward"]
    assert tasks == ["sst", "sts"] * 4  # rrobin: 2 steps per epoch, both tasks each step, 2 epochs


def test_hook_platform_on_after_optimizer_step(recorded):
    """Sequential updates: an optimizer step after each task batch, two per planned step, before the step ends."""
    steps = [c for c in recorded if c[0] in ("optimizer_step", "after_step")]
    assert steps[:3] == [("optimizer_step", 0), ("optimizer_step", 0), ("after_step", 1, ("sst", "sts"))]
    assert sum(c[0] == "optimizer_step" for c in steps) == 8


def test_hook_platform_on_after_step(recorded):
    steps = [c for c in recorded if c[0] == "after_step"]
    assert [c[1] for c in steps] == [1, 2, 3, 4] and all(c[2] == ("sst", "sts") for c in steps)


def test_hook_platform_on_log(recorded):
    """Every --log-every (here 2) steps: each task's mean loss over the steps since the last call (both
    batches of a task hold 8 examples, so the plain mean of the step losses)."""
    logs = [c for c in recorded if c[0] == "log"]
    step_losses = recorded[-1][1]
    assert [c[1] for c in logs] == [2, 4]
    for (_, step, losses), first, second in zip(logs, step_losses[0::2], step_losses[1::2]):
        assert set(losses) == {"sst", "sts"} and all(isinstance(v, float) for v in losses.values())
        assert losses == pytest.approx({task: (first[task] + second[task]) / 2 for task in losses}, rel=1e-6)


def test_hook_platform_on_evaluate_end(recorded):
    evaluations = [c for c in recorded if c[0] == "evaluate_end"]
    assert evaluations == [("evaluate_end", "dev", ("mean", "sst", "sts"))] * 2


def test_hook_platform_on_epoch_end(recorded):
    ends = [i for i, c in enumerate(recorded) if c[0] == "epoch_end"]
    assert len(ends) == 2 and recorded[ends[0] - 1][0] == "evaluate_end"


def test_hook_platform_on_train_end(recorded):
    assert recorded[-2] == ("train_end", ("epoch", "mean", "sst", "sts"))


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_parameter_is_typed(name):
    import inspect

    parameters = inspect.signature(getattr(hookspecs, name)).parameters.values()
    assert all(parameter.annotation is not inspect.Parameter.empty for parameter in parameters)
    assert "Any" not in " ".join(str(parameter.annotation) for parameter in parameters)
