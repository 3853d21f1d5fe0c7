"""The built-in task kinds and metrics: divergences and losses by hand, labels, heads, predictions."""

import math

import pytest
import torch

from core.tasks import PAIR_REGRESSION, SINGLE_CLASSIFICATION, TOKEN_TAGGING, TaskSpec
from plugins.kinds import squared_error, symmetric_kl_bernoulli, symmetric_kl_logits
from tests.helpers import bind_tasks

LN3 = math.log(3.0)
FILES = {"train": "t", "dev": "d"}
TASKS = bind_tasks(
    TaskSpec(name="five", kind=SINGLE_CLASSIFICATION, files=FILES, text_columns=("s",), num_labels=5),
    TaskSpec(name="binary", kind=SINGLE_CLASSIFICATION, files=FILES, text_columns=("s",)),
    TaskSpec(name="sim", kind=PAIR_REGRESSION, files=FILES, text_columns=("a", "b"), label_range=(0.0, 5.0)),
    TaskSpec(name="tags", kind=TOKEN_TAGGING, files=FILES, text_columns=("words",), labels=("O", "B-x", "I-x")),
)


# ---------------------------------------------------------------------------------------------------
# Divergences
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
def test_every_kinds_divergence_is_symmetric_and_zero_on_equal_outputs(task, shape):
    task = TASKS[task]
    a, b = torch.randn(shape, generator=torch.Generator().manual_seed(0)), torch.randn(shape)
    labels = torch.randint(0, 3, shape[:2]) if len(shape) == 3 else None
    if labels is not None:
        labels[:, ::2] = -100  # untagged pieces take no part

    def divergence(x, y):
        return task.kind.divergence(task.spec, x, y, labels).item()

    assert divergence(a, b) > 0 and divergence(a, b) == pytest.approx(divergence(b, a), rel=1e-6)
    assert divergence(a, a) == 0.0
    if labels is not None:  # only tagged positions count
        changed = a.clone()
        changed[:, ::2] += 5.0
        assert divergence(changed, a) == 0.0


