"""plugins.methods.smart: divergences by hand, the ε-ball, the EMA teacher, the adversarial term on a tiny
model, registration and CLI options, TensorBoard telemetry, exact resume, and a step-time figure."""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import pytest
import torch

from core.base.errors import ConfigError
from core.build.run import prepare
from core.data.batch import Batch
from core.encoder.loading import load_encoder
from core.model.multitask import MultitaskModel, perturbed_embeddings
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import Registries
from core.tasks.heads import Widths
from core.tasks.spec import TaskSpec
from core.train.loop import train
from plugins.methods import smart
from plugins.methods.smart import (
    DIVERGENCES,
    Smart,
    SmartConfig,
    squared_error,
    symmetric_kl_bernoulli,
    symmetric_kl_logits,
)
from plugins.standard.independent import independent_heads
from tests.helpers import bind_tasks

LN3 = math.log(3.0)
FILES = {"train": "t", "dev": "d"}
OUTPUT_TASKS = bind_tasks(
    TaskSpec(name="five", kind="single-classification", files=FILES, text_columns=("s",), num_labels=5),
    TaskSpec(name="binary", kind="single-classification", files=FILES, text_columns=("s",)),
    TaskSpec(name="sim", kind="pair-regression", files=FILES, text_columns=("a", "b"), label_range=(0.0, 5.0)),
    TaskSpec(name="tags", kind="token-tagging", files=FILES, text_columns=("words",), labels=("O", "B-x", "I-x")),
)


# ---------------------------------------------------------------------------------------------------
# Divergences of the built-in kinds' head outputs
# ---------------------------------------------------------------------------------------------------


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_symmetric_kl_of_logits_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4], softmax([0, 0]) = [1/2, 1/2]
    expected = kl([0.25, 0.75], [0.5, 0.5]) + kl([0.5, 0.5], [0.25, 0.75])
    assert expected == pytest.approx(LN3 / 4)
    got = symmetric_kl_logits(torch.tensor([[0.0, LN3]]), torch.tensor([[0.0, 0.0]]))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # a batch averages its examples: the second pair is equal, so half the first
    batch = symmetric_kl_logits(torch.tensor([[0.0, LN3], [1.0, 2.0]]), torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    assert batch.item() == pytest.approx(expected / 2, rel=1e-6)


def test_symmetric_kl_of_one_logit_is_the_bernoulli_one_by_hand_and_not_zero():
    a, b = torch.tensor([[LN3]]), torch.tensor([[0.0]])  # σ(ln 3) = 3/4, σ(0) = 1/2
    expected = kl([0.75, 0.25], [0.5, 0.5]) + kl([0.5, 0.5], [0.75, 0.25])
    got = symmetric_kl_bernoulli(a, b)
    assert got.item() == pytest.approx(expected, rel=1e-6) and got.item() > 0
    # one logit z is the two-class logits [0, z]
    two_classes = symmetric_kl_logits(torch.tensor([[0.0, LN3]]), torch.zeros(1, 2))
    assert got.item() == pytest.approx(two_classes.item(), rel=1e-6)
    # the bug of a softmax over a single logit: always 0, whatever the logits
    assert symmetric_kl_logits(a, b).item() == 0.0
    # saturated logits stay finite: (σ(a) − σ(b))(a − b) -> 1 · 100
    assert symmetric_kl_bernoulli(torch.tensor([[50.0]]), torch.tensor([[-50.0]])).item() == pytest.approx(100.0)
    assert symmetric_kl_bernoulli(torch.tensor([0.5, -1.0]), torch.tensor([0.5, -1.0])).item() == 0.0  # (B,) too


def test_squared_error_by_hand():
    got = squared_error(torch.tensor([[0.5], [0.25]]), torch.tensor([[0.0], [0.75]]))
    assert got.item() == pytest.approx((0.25 + 0.25) / 2)


@pytest.mark.parametrize("task, shape", [("five", (6, 5)), ("binary", (6, 1)), ("sim", (6, 1)), ("tags", (6, 9, 3))])
def test_every_built_in_kinds_divergence_is_symmetric_and_zero_on_equal_outputs(task, shape):
    task = OUTPUT_TASKS[task]
    measure = DIVERGENCES[task.kind.output(task.spec)]
    a, b = torch.randn(shape, generator=torch.Generator().manual_seed(0)), torch.randn(shape)
    labels = torch.randint(0, 3, shape[:2]) if len(shape) == 3 else None
    if labels is not None:
        labels[:, ::2] = -100  # untagged pieces take no part

    def divergence(x, y):
        return measure(x, y, labels).item()

    assert divergence(a, b) > 0 and divergence(a, b) == pytest.approx(divergence(b, a), rel=1e-6)
    assert divergence(a, a) == 0.0
    if labels is not None:  # only tagged positions count
        changed = a.clone()
        changed[:, ::2] += 5.0
        assert divergence(changed, a) == 0.0


def bind_tasks_with(pm, *specs):
    registries = Registries(pm)
    return {spec.name: registries.bind(spec) for spec in specs}


def test_a_kind_without_a_divergence_is_refused_by_name_and_a_plugin_adds_one():
    """SMART keeps its divergences by output form; a third-party kind's plugin extends the table through the
    hook SMART declares (docs/examples/hooks/multilabel.py does so), and a kind it cannot measure is refused."""
    from tests.docs.test_hook_examples import example

    smart = Smart(SmartConfig(), tiny_model())
    multilabel = example("multilabel")
    pm = make_plugin_manager(enabled=(), third_party=False)
    pm.register(multilabel, name="multilabel")
    [task] = bind_tasks_with(pm, TaskSpec(name="topics", kind="multi-label", files=FILES,
                                                  text_columns=("s",), labels=("a", "b"))).values()
    with pytest.raises(ConfigError, match="smart: task 'topics' \\(kind multi-label\\) outputs 'label-logits', for "
                                          "which SMART has no divergence"):
        smart.divergence_of(task)
    smart.divergences.update(*pm.hook.platform_smart_divergences())
    assert smart.divergence_of(task) is multilabel.per_label_symmetric_kl


# ---------------------------------------------------------------------------------------------------
# The ε-ball
# ---------------------------------------------------------------------------------------------------


def test_projection_keeps_every_example_inside_the_ball():
    big = torch.randn(4, 7, 16) * 3
    small = big * 1e-9
    inf = smart.project(big, 0.01, "inf")
    assert inf.flatten(1).abs().amax(dim=1).max().item() <= 0.01
    l2 = smart.project(big, 0.01, "l2")
    assert torch.all(l2.flatten(1).norm(dim=1) <= 0.01 * (1 + 1e-5))
    assert torch.allclose(l2.flatten(1).norm(dim=1), torch.full((4,), 0.01))  # outside: moved onto the sphere
    for norm in ("inf", "l2"):
        assert torch.equal(smart.project(small, 0.01, norm), small)  # inside: left alone


def test_gradient_normalisation_is_per_example():
    grad = torch.randn(3, 5, 8) * torch.tensor([1e-6, 1.0, 1e3]).view(3, 1, 1)
    assert torch.allclose(smart.normalize(grad, "inf").flatten(1).abs().amax(dim=1), torch.ones(3))
    assert torch.allclose(smart.normalize(grad, "l2").flatten(1).norm(dim=1), torch.ones(3))
    assert torch.equal(smart.normalize(torch.zeros(2, 3, 4), "inf"), torch.zeros(2, 3, 4))  # no division by zero


# ---------------------------------------------------------------------------------------------------
# A tiny model with one task of each head kind
# ---------------------------------------------------------------------------------------------------

SPECS = {
    "five": TaskSpec(name="five", kind="single-classification", files={"train": "t", "dev": "d"}, text_columns=("s",),
                     num_labels=5),
    "para": TaskSpec(name="para", kind="pair-classification", files={"train": "t", "dev": "d"}, text_columns=("a", "b")),
    "sim": TaskSpec(name="sim", kind="pair-regression", files={"train": "t", "dev": "d"}, text_columns=("a", "b"),
                    label_range=(0.0, 5.0)),
}
TASKS = bind_tasks(*SPECS.values())


def tiny_model(dropout: float = 0.0) -> MultitaskModel:
    torch.manual_seed(0)
    encoder = load_encoder("tiny", hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, seed=0)
    heads = independent_heads(None, list(TASKS.values()), Widths(128, 128), dropout)
    return MultitaskModel(encoder, heads, TASKS, "mean")


def tiny_batch(task: str, size: int = 4, length: int = 12) -> Batch:
    """Random tokens, the last rows padded; pair tasks stack both sentences: (texts·B, T)."""
    rows = size * len(TASKS[task].spec.text_columns)  # both kinds with pairs here are bi-encoders
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1000, 2000, (rows, length), generator=generator)
    attention_mask = torch.ones(rows, length, dtype=torch.long)
    attention_mask[1::2, length // 2:] = 0  # every other row is padded after half its length
    input_ids[attention_mask == 0] = 0
    labels = torch.randint(0, 2 if TASKS[task].spec.num_labels == 1 else 5, (size,), generator=generator)
    return Batch(task, input_ids, torch.zeros_like(input_ids), attention_mask, labels,
                 [str(i) for i in range(size)], torch.arange(size))


def test_perturbed_embeddings_change_the_forward_only_inside_the_block_and_pass_gradients():
    model = tiny_model()
    batch = tiny_batch("five")
    plain = model(batch).detach()
    with perturbed_embeddings(model, lambda emb: emb + torch.zeros_like(emb)):
        torch.testing.assert_close(model(batch), plain, atol=0, rtol=0)
    noise = (1e-2 * torch.randn(4, 12, 128)).requires_grad_()
    seen = []
    with perturbed_embeddings(model, lambda emb: seen.append(emb.shape) or emb + noise):
        perturbed = model(batch)
    assert seen == [(4, 12, 128)] and not torch.allclose(perturbed, plain)
    perturbed.sum().backward()
    assert noise.grad is not None and noise.grad.abs().sum() > 0
    torch.testing.assert_close(model(batch).detach(), plain, atol=0, rtol=0)  # the hook is gone after the block


def run_terms(regularizer, model, batch):
    output = model(batch)
    return regularizer.terms(model, batch, output, lambda: model(batch), 0.0)


@pytest.mark.parametrize("task", list(TASKS))
def test_adversarial_term_is_positive_and_trains_the_model(task):
    model = tiny_model()  # no dropout: the term measures the perturbation alone
    regularizer = Smart(SmartConfig(bregman_weight=0.0, epsilon=1e-3, noise=1e-3), model)
    terms = run_terms(regularizer, model, tiny_batch(task))
    assert set(terms) == {"adversarial"} and terms["adversarial"].item() > 0
    terms["adversarial"].backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert grads["encoder.embeddings.word_embeddings.weight"].abs().sum() > 0  # through x + δ, into the embeddings
    assert grads["encoder.encoder.layer.0.attention.self.query.weight"].abs().sum() > 0
    if task != "sim":  # the cosine head has no parameters
        assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(f"heads.{task}."))
    assert all(g is None for n, g in grads.items() if n.startswith("heads.") and not n.startswith(f"heads.{task}."))


@pytest.mark.parametrize("precision, epsilon, warned", [("bf16", 1e-5, True), ("bf16", 1e-2, False),
                                                         ("fp32", 1e-5, False)])
def test_a_perturbation_below_bf16_resolution_is_reported(caplog, precision, epsilon, warned):
    model = tiny_model()
    model.precision = precision
    with caplog.at_level("WARNING", logger="platform"):
        Smart(SmartConfig(epsilon=epsilon), model)
    assert ("below" not in caplog.text and "coarser than the perturbation radius" in caplog.text) == warned


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_perturbation_lies_in_the_ball_off_the_padding_and_beats_random_ones(norm):
    model = tiny_model()
    epsilon = 1e-2  # large enough for divergences well above float32 rounding
    config = SmartConfig(epsilon=epsilon, noise=epsilon, step_size=1.0, norm=norm, bregman_weight=0.0)
    batch = tiny_batch("five", size=8)
    output = model(batch)
    delta = Smart(config, model).perturbation(model, batch, output, lambda: model(batch), symmetric_kl_logits)
    assert delta.shape == (8, 12, 128) and not delta.requires_grad
    assert torch.all(delta[batch.attention_mask == 0] == 0)
    sizes = delta.flatten(1).abs().amax(dim=1) if norm == "inf" else delta.flatten(1).norm(dim=1)
    assert torch.all(sizes <= epsilon * (1 + 1e-5))

    def divergence_at(d):
        with torch.no_grad(), perturbed_embeddings(model, lambda emb: emb + d):
            return symmetric_kl_logits(model(batch), output).item()

    mask = batch.attention_mask.unsqueeze(-1)
    randoms = [smart.project(torch.randn_like(delta).sign() * mask, epsilon, norm) for _ in range(5)]
    assert divergence_at(delta) > 10 * max(divergence_at(d) for d in randoms)


def test_ema_teacher_update_is_exact():
    model = tiny_model(dropout=0.1)
    regularizer = Smart(SmartConfig(momentum=0.9), model)
    teacher = regularizer.teacher
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():  # a model that moved away from the copy
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    current = model.state_dict()
    regularizer.update_teacher(model)
    for key, value in teacher.state_dict().items():
        expected = 0.9 * before[key] + (1 - 0.9) * current[key]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=key)


def test_bregman_term_uses_the_teacher_and_zero_weight_skips_it():
    model = tiny_model(dropout=0.1)
    model.train()
    regularizer = Smart(SmartConfig(weight=0.0), model)
    batch = tiny_batch("para")
    terms = run_terms(regularizer, model, batch)
    assert set(terms) == {"bregman"} and terms["bregman"].item() > 0  # dropout: the student differs from f̃
    assert terms["bregman"].requires_grad
    none = Smart(SmartConfig(bregman_weight=0.0), model)
    assert none.teacher is None and none.state_dict() == {}
    assert "bregman" not in run_terms(none, model, batch)
    with pytest.raises(ValueError, match="the checkpoint has a teacher, but --smart-bregman-weight is 0.0"):
        none.load_state_dict(regularizer.state_dict())


# ---------------------------------------------------------------------------------------------------
# Registration, options, telemetry and resume through the real host
# ---------------------------------------------------------------------------------------------------


def test_registered_only_when_enabled_with_options():
    from core.cli.main import parser_for, read

    pm = make_plugin_manager(enabled=("smart",), third_party=False)
    component = Registries(pm).regularizers["smart"]
    assert component.factory is Smart and component.settings is SmartConfig and component.plugin == "smart"
    assert component.help and component.space is not None
    assert isinstance(component.factory(SmartConfig(), tiny_model()), Smart)
    assert "smart" not in Registries(make_plugin_manager(enabled=(), third_party=False)).regularizers

    assert "--smart-weight" in parser_for(["run", "--plugins", "smart"]).format_help()
    assert "--smart-weight" not in parser_for(["run"]).format_help()  # an option exists only when its plugin is on
    _, _, invocation = read(["run", "--plugins", "smart", "--smart-weight", "2", "--smart-norm", "l2",
                             "--smart-bregman-weight", "0"])
    assert invocation.values["components"]["smart"] == {"weight": 2.0, "norm": "l2", "bregman_weight": 0.0}


@pytest.mark.parametrize("bad", [{"weight": -1.0}, {"epsilon": 0.0}, {"step_size": 0.0}, {"noise": -1e-5},
                                 {"steps": 0}, {"norm": "l1"}, {"momentum": 1.0}, {"bregman_weight": -0.5}])
def test_config_rejects_out_of_range_settings(bad):
    with pytest.raises(ValueError):
        SmartConfig(**bad)


@pytest.fixture(scope="module")
def smart_config(tmp_path_factory, tiny_data_dir):
    """Two epochs of a tiny run with SMART over one task of each head kind (ce, bce, mse)."""
    from core.experiment.config import RunConfig

    return RunConfig(tasks=("sst", "quora", "sts"), plugins=("smart",), checkpoint="tiny", limit=16, batch_size=8,
                     eval_batch_size=16, max_length=32, epochs=2, lr=1e-3, sampler="rrobin", log_every=1,
                     data_dir=str(tiny_data_dir), output_dir=str(tmp_path_factory.mktemp("smart") / "reference"),
                     threads=1)


@pytest.fixture(scope="module")
def reference(smart_config):
    run = prepare(smart_config)
    return run, train(run)


def test_tiny_run_logs_smart_terms_per_task(smart_config, reference):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = reference
    assert list(run.regularizers) == ["smart"]
    events = EventAccumulator(str(Path(smart_config.output_dir) / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for task in smart_config.tasks:
        assert {f"smart/{task}/adversarial", f"smart/{task}/bregman"} <= tags
        adversarial = events.Scalars(f"smart/{task}/adversarial")
        assert [e.step for e in adversarial] == list(range(1, 5)) and all(e.value > 0 for e in adversarial)
        # the same step numbers as the task losses the tensorboard plugin logs after each step
        assert [e.step for e in events.Scalars(f"train/loss/{task}")] == list(range(1, 5))
    teacher, model = run.regularizers["smart"].teacher.state_dict(), run.model.state_dict()
    assert not all(torch.equal(teacher[k], model[k]) for k in teacher)  # the EMA moved, and lags the model


class StopAtEpoch(RuntimeError):
    pass


def test_resumed_run_restores_the_teacher_and_ends_identically(smart_config, reference, tmp_path):
    from core.plugin.hookspecs import hookimpl

    class Interrupt:
        @hookimpl
        def platform_on_epoch_start(self, epoch):
            if epoch == 1:  # after epoch 0's last.pt
                raise StopAtEpoch

    config = attrs.evolve(smart_config, output_dir=str(tmp_path / "stopped"))
    pm = make_plugin_manager(enabled=config.plugins)
    pm.register(Interrupt(), name="interrupt")
    stopped = prepare(config, pm)
    with pytest.raises(StopAtEpoch):
        train(stopped)
    saved = {k: v.clone() for k, v in stopped.regularizers["smart"].teacher.state_dict().items()}

    resumed = prepare(config, resume=True)
    assert resumed.epoch == 1
    restored = resumed.regularizers["smart"].teacher.state_dict()
    assert saved.keys() == restored.keys() and all(torch.equal(saved[k], restored[k]) for k in saved)
    reference_run, reference_metrics = reference
    assert train(resumed) == reference_metrics
    final = reference_run.regularizers["smart"].teacher.state_dict()
    assert all(torch.equal(final[k], v) for k, v in resumed.regularizers["smart"].teacher.state_dict().items())
