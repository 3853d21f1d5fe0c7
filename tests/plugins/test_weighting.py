"""The loss-weighting balancers (plugins/methods/weighting): each method's update against values worked
out by hand from its paper's formula, then every method in a real tiny run: it trains with its weights
logged, and a run killed mid-epoch resumes to exactly the uninterrupted one, the method's state included."""

import math
from pathlib import Path

import attrs
import pytest
import torch

from core.base.files import load
from core.build.run import prepare
from core.train.loop import train
from plugins.methods.weighting.dwa import DWA, DWAConfig, dwa_weights
from plugins.methods.weighting.famo import FAMO, FAMOConfig
from plugins.methods.weighting.gradnorm import GradNorm, GradNormConfig
from plugins.methods.weighting.rlw import RLW
from plugins.methods.weighting.uncertainty import Uncertainty, UncertaintyConfig
from tests.helpers import kill_run_at_step

TASKS = ["sst", "sts"]


def losses(sst: float, sts: float) -> dict[str, torch.Tensor]:
    return {"sst": torch.tensor(sst), "sts": torch.tensor(sts)}


def test_uncertainty_weights_move_along_the_gradient_of_the_papers_objective():
    """sum_t exp(-s_t) L_t + s_t at s = 0 has gradient 1 - L_t: (-1, 0.5) for losses (2, 0.5). Adam's first
    step moves each s_t by lr against the sign of its gradient: s = (0.1, -0.1), weights exp(-s)."""
    balancer = Uncertainty(UncertaintyConfig(lr=0.1), TASKS, seed=0)
    assert balancer.weights(TASKS, 0) == {"sst": 1.0, "sts": 1.0}
    balancer.update(losses(2.0, 0.5), 0)
    torch.testing.assert_close(balancer.log_variances.detach(), torch.tensor([0.1, -0.1]), atol=1e-6, rtol=0)
    weights = balancer.weights(TASKS, 1)
    assert float(weights["sst"]) == pytest.approx(math.exp(-0.1), abs=1e-6)
    assert float(weights["sts"]) == pytest.approx(math.exp(0.1), abs=1e-6)


def test_uncertainty_weights_settle_at_the_inverse_of_a_steady_loss():
    balancer = Uncertainty(UncertaintyConfig(lr=0.05), TASKS, seed=0)
    for step in range(2000):
        balancer.update(losses(4.0, 0.25), step)
    weights = balancer.weights(TASKS, 2000)
    assert float(weights["sst"]) == pytest.approx(1 / 4.0, rel=0.02)
    assert float(weights["sts"]) == pytest.approx(1 / 0.25, rel=0.02)


def test_dwa_weighs_the_slower_task_more_after_two_periods():
    """Period means (1, 2) then (0.5, 2): ratios r = (0.5, 1); w = 2 softmax(r / 2):
    w_sst = 2 / (1 + e^0.25), w_sts = 2 e^0.25 / (1 + e^0.25)."""
    balancer = DWA(DWAConfig(temperature=2.0, period=2), TASKS, seed=0)
    for step, (sst, sts) in enumerate([(1.0, 2.0), (1.0, 2.0), (0.5, 2.0)]):
        balancer.update(losses(sst, sts), step)
        assert balancer.weights(TASKS, step + 1) == {"sst": 1.0, "sts": 1.0}  # two periods not yet over
    balancer.update(losses(0.5, 2.0), 3)
    weights = balancer.weights(TASKS, 4)
    assert float(weights["sst"]) == pytest.approx(2 / (1 + math.exp(0.25)), abs=1e-6)
    assert float(weights["sts"]) == pytest.approx(2 * math.exp(0.25) / (1 + math.exp(0.25)), abs=1e-6)
    torch.testing.assert_close(dwa_weights(torch.tensor([1.0, 1.0]), torch.tensor([3.0, 3.0]), 2.0),
                               torch.tensor([1.0, 1.0]))  # equal ratios: equal weights


def test_rlw_draws_a_point_of_the_simplex_per_step_the_same_in_every_process():
    balancer, again = RLW(TASKS, seed=3), RLW(TASKS, seed=3)
    draws = [balancer.weights(TASKS, step) for step in range(20)]
    for step, weights in enumerate(draws):
        assert float(sum(weights.values())) == pytest.approx(1.0) and all(float(w) > 0 for w in weights.values())
        assert again.weights(TASKS, step) == weights  # a pure function of (seed, step)
    assert len({round(float(w["sst"]), 6) for w in draws}) == 20
    assert balancer.weights(["sts"], 0) == {"sts": 1.0}  # a step of one task: all the weight


def test_gradnorm_moves_weight_toward_the_task_with_the_smaller_gradient():
    """g = (3, 0) and (0, 1), both tasks at their initial loss (r = 1): G = (3, 1), target 2 each,
    d L_grad / d w = (+3, -1); Adam's first step: w = (0.9, 1.1), still summing to 2. The step's
    direction uses the weights before the update."""
    balancer = GradNorm(GradNormConfig(alpha=1.5, lr=0.1), TASKS, seed=0)
    grads = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    made = balancer.aggregate(grads, torch.tensor([0.7, 0.3]), TASKS, 0)
    torch.testing.assert_close(made.direction, torch.tensor([3.0, 1.0]))
    torch.testing.assert_close(balancer.task_weights.detach(), torch.tensor([0.9, 1.1]), atol=1e-6, rtol=0)
    made = balancer.aggregate(grads, torch.tensor([0.7, 0.3]), TASKS, 1)
    torch.testing.assert_close(made.direction, torch.tensor([2.7, 1.1]), atol=1e-6, rtol=0)
    torch.testing.assert_close(made.head_factors, torch.tensor([0.9, 1.1]), atol=1e-6, rtol=0)


def test_famo_weights_and_its_logit_step_by_hand():
    """Step 0: z = (1/2, 1/2), losses (2, 0.5): weights z_t / L_t normalised = (0.2, 0.8). Step 1, losses
    (1, 0.5): delta = (log 2, 0); through the softmax Jacobian (diag z - z z^T) the logits' gradient is
    (log 2 / 4, -log 2 / 4), and Adam's first step moves them by -lr sign: (-lr, +lr)."""
    balancer = FAMO(FAMOConfig(lr=0.025, gamma=0.0), TASKS, seed=0)
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    made = balancer.aggregate(grads, torch.tensor([2.0, 0.5]), TASKS, 0)
    torch.testing.assert_close(made.weights, torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(made.direction, torch.tensor([0.2, 0.8]))
    made = balancer.aggregate(grads, torch.tensor([1.0, 0.5]), TASKS, 1)
    torch.testing.assert_close(balancer.logits.detach(), torch.tensor([-0.025, 0.025]), atol=1e-6, rtol=0)
    z = torch.softmax(torch.tensor([-0.025, 0.025]), dim=0)
    expected = z / torch.tensor([1.0, 0.5])
    torch.testing.assert_close(made.weights, expected / expected.sum())


# --------------------------------------------------------------------------------------------------
# In real runs
# --------------------------------------------------------------------------------------------------

METHODS = ["uncertainty", "dwa", "rlw", "gradnorm", "famo"]


def balanced(tiny_config, method: str, **changes):
    return attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=(method,), update="summed", sampler="rrobin",
                        **changes)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_method_trains_and_logs_every_tasks_weight(tiny_config, method):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = balanced(tiny_config, method, epochs=1)
    run = prepare(config)
    assert run.pm.get_plugin("balancer") is run.balancer and type(run.balancer).__module__.endswith(method)
    train(run)
    tags = EventAccumulator(str(Path(config.output_dir) / "tensorboard")).Reload().Tags()["scalars"]
    assert {"balance/weight/sst", "balance/weight/sts"} <= set(tags)
    if run.balancer.gradients:
        assert "balance/cosine/sst-sts" in tags


def test_a_method_needs_the_summed_update(tiny_config):
    from core.base.errors import ConfigError

    with pytest.raises(ConfigError, match="balancer 'famo' .* add --update summed"):
        prepare(attrs.evolve(balanced(tiny_config, "famo"), update="sequential"))


@pytest.mark.integration
@pytest.mark.parametrize("method", METHODS)
def test_a_killed_run_resumes_to_the_uninterrupted_one_with_the_methods_state(tiny_config, tmp_path, method):
    """Killed after the second epoch's first step (last.pt holds it: --save-every 1), resumed: the same
    metrics, weights and balancer state as a run never stopped (DWA with a period of 2 steps, so that its
    weights change within the run)."""
    changes = {"components": {"dwa": {"period": 2}}} if method == "dwa" else {}
    reference = balanced(tiny_config, method, output_dir=str(tmp_path / "reference"), **changes)
    run = prepare(reference)
    steps_per_epoch, best = run.steps_per_epoch, train(run)
    killed = attrs.evolve(reference, output_dir=str(tmp_path / "killed"), save_every=1)
    kill_run_at_step(killed, steps_per_epoch + 2, tmp_path)
    resumed = prepare(killed, resume=True)
    assert (resumed.epoch, resumed.step_in_epoch) == (1, 1)
    assert train(resumed) == best
    final = [load(Path(folder) / "last.pt") for folder in (reference.output_dir, killed.output_dir)]
    for name, weight in final[0]["model"].items():
        assert torch.equal(final[1]["model"][name], weight), name
    assert final[0]["balancer"].keys() == final[1]["balancer"].keys() and final[0]["balancer"] or method == "rlw"
    for key, value in final[0]["balancer"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(final[1]["balancer"][key], value), key


@pytest.mark.parametrize("method", ["gradnorm", "uncertainty"])
def test_under_bf16_autocast_a_method_sees_float32_losses_and_gradients(tiny_config, method):
    """Under bf16 autocast the matrix multiplies run in bfloat16, but the losses (heads and losses run in
    float32) and the parameters' gradients are float32: the method's state stays float32 and finite."""
    seen: list[torch.dtype] = []
    run = prepare(balanced(tiny_config, method, epochs=1, precision="bf16"))
    original = run.balancer.aggregate if run.balancer.gradients else run.balancer.update

    def spy(*args):
        seen.extend(arg.dtype for arg in args if isinstance(arg, torch.Tensor))
        seen.extend(value.dtype for arg in args if isinstance(arg, dict) for value in arg.values())
        return original(*args)

    setattr(run.balancer, "aggregate" if run.balancer.gradients else "update", spy)
    train(run)
    assert seen and set(seen) == {torch.float32}
    state = run.balancer.state_dict()
    tensors = [value for value in state.values() if isinstance(value, torch.Tensor) and value.is_floating_point()]
    assert tensors and all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in tensors)
