"""core.optim.AdamW against torch.optim.AdamW and a plain per-parameter reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from core.train.optim import AdamW

STEPS = 20


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _batches(seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(32, 8, generator=g), torch.randn(32, 3, generator=g))
            for _ in range(STEPS)]


def _train(model, optimizer, batches, scheduler=None) -> list[float]:
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module, atol: float) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=name)


class ReferenceAdamW:
    """The update rule written out per parameter with plain tensor ops (float64 state)."""

    def __init__(self, params, lr, betas, eps, weight_decay, correct_bias):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.wd, self.correct_bias = weight_decay, correct_bias
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            step_size = self.lr
            if self.correct_bias:
                step_size = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
            p.sub_(step_size * m / (v.sqrt() + self.eps))
            p.sub_(self.lr * self.wd * p)


# ---------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------


IMPLEMENTATIONS = pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])


@IMPLEMENTATIONS
def test_matches_torch_adamw_without_decay(fused):
    """With wd = 0 and a negligible eps the two bias-correction forms coincide."""
    ours, theirs, batches = _model(), _model(), _batches()
    _train(ours, AdamW(ours.parameters(), lr=1e-2, eps=1e-12, fused=fused), batches)
    _train(theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-2, eps=1e-12, weight_decay=0.0),
           batches)
    _assert_same_params(ours, theirs, atol=1e-6)


@IMPLEMENTATIONS
@pytest.mark.parametrize("correct_bias", [True, False])
def test_matches_reference_with_decay(correct_bias, fused):
    hyper = dict(lr=3e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05,
                 correct_bias=correct_bias)
    ours, ref, batches = _model(), _model(), _batches()
    _train(ours, AdamW(ours.parameters(), **hyper, fused=fused), batches)
    _train(ref, ReferenceAdamW(ref.parameters(), **hyper), batches)
    _assert_same_params(ours, ref, atol=1e-6)


@IMPLEMENTATIONS
def test_param_groups_use_their_own_hyperparameters(fused):
    ours, ref, batches = _model(), _model(), _batches()
    first, second = ours[0], ours[2]
    opt = AdamW([{"params": first.parameters()},
                 {"params": second.parameters(), "lr": 1e-2, "weight_decay": 0.1}],
                lr=1e-3, weight_decay=0.0, fused=fused)
    refs = [ReferenceAdamW(ref[0].parameters(), 1e-3, (0.9, 0.999), 1e-6, 0.0, True),
            ReferenceAdamW(ref[2].parameters(), 1e-2, (0.9, 0.999), 1e-6, 0.1, True)]
    for x, y in batches:
        for o in (opt, *refs):
            o.zero_grad()
        for m in (ours, ref):
            torch.nn.functional.mse_loss(m(x), y).backward()
        opt.step()
        for r in refs:
            r.step()
    _assert_same_params(ours, ref, atol=1e-6)
    assert first.weight.grad is not None and second.weight.grad is not None


@IMPLEMENTATIONS
def test_parameters_without_grad_are_skipped(fused):
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = AdamW([used, unused], lr=0.1, weight_decay=0.5, fused=fused)
    used.sum().backward()
    opt.step()
    assert torch.equal(unused, torch.ones(3)) and unused not in opt.state
    assert opt.state[used]["step"] == 1 and not torch.equal(used, torch.ones(3))


def test_fused_is_the_default_on_cpu_and_matches_foreach_when_parameters_skip_steps():
    """Task heads get gradients only in their own task's steps: step counts differ per parameter,
    and the fused kernel is called once per step count."""
    models = [_model(), _model()]
    fused, foreach = (AdamW(m.parameters(), lr=3e-3, weight_decay=0.01, **kw) for m, kw in zip(models, ({}, {"fused": False})))
    assert fused._use_fused(list(models[0].parameters())) and not foreach._use_fused(list(models[1].parameters()))
    for i, (x, y) in enumerate(_batches()):
        for model, opt in zip(models, (fused, foreach)):
            opt.zero_grad(set_to_none=True)
            head = model[2] if i % 3 else model  # every third step trains everything, the others the head only
            torch.nn.functional.mse_loss(model(x), y).backward(inputs=list(head.parameters()))
            opt.step()
    counts = {fused.state[p]["step"] for p in models[0].parameters()}
    assert counts == {STEPS // 3 + 1, STEPS}  # two step counts: two kernel calls per step
    _assert_same_params(models[0], models[1], atol=1e-6)


def test_fused_needs_a_torch_with_the_kernel(monkeypatch):
    monkeypatch.delattr(torch, "_fused_adamw_")
    with pytest.raises(RuntimeError, match="no fused Adam kernel"):
        AdamW([torch.nn.Parameter(torch.zeros(1))], fused=True)
    opt = AdamW([w := torch.nn.Parameter(torch.zeros(2))], lr=0.1)  # the default falls back to foreach ops
    w.sum().backward()
    opt.step()
    assert torch.allclose(w, torch.full((2,), -0.1), atol=1e-5)  # eps makes it 0.099997


# ---------------------------------------------------------------------------------------------
# torch.optim compatibility
# ---------------------------------------------------------------------------------------------


def test_state_dict_round_trip_continues_identically():
    batches = _batches()
    straight = _model()
    _train(straight, AdamW(straight.parameters(), lr=1e-2, weight_decay=0.01), batches)

    resumed = _model()
    opt = AdamW(resumed.parameters(), lr=1e-2, weight_decay=0.01)
    _train(resumed, opt, batches[:STEPS // 2])
    saved_model = copy.deepcopy(resumed.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())

    fresh = _model(seed=123)
    fresh.load_state_dict(saved_model)
    fresh_opt = AdamW(fresh.parameters(), lr=5.0)  # hyperparameters come from the state dict
    fresh_opt.load_state_dict(saved_opt)
    assert fresh_opt.param_groups[0]["lr"] == 1e-2
    _train(fresh, fresh_opt, batches[STEPS // 2:])
    _assert_same_params(fresh, straight, atol=0)


def test_works_with_lambda_lr_scheduler():
    ours, ref, batches = _model(), _model(), _batches()
    opt = AdamW(ours.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    _train(ours, opt, batches, scheduler=schedule)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 / (1 + STEPS))

    ref_opt = ReferenceAdamW(ref.parameters(), 1e-2, (0.9, 0.999), 1e-6, 0.0, True)
    for i, (x, y) in enumerate(batches):
        ref_opt.lr = 1e-2 / (1 + i)
        ref_opt.zero_grad()
        torch.nn.functional.mse_loss(ref(x), y).backward()
        ref_opt.step()
    _assert_same_params(ours, ref, atol=1e-6)


def test_closure_is_called_and_its_loss_returned():
    w = torch.nn.Parameter(torch.tensor([2.0]))
    opt = AdamW([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(4.0)
    assert w.item() < 2.0


def test_minimises_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=g)
    true_w = torch.randn(5, 1, generator=g)
    y = x @ true_w
    w = torch.nn.Parameter(torch.zeros(5, 1))
    opt = AdamW([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-4
    torch.testing.assert_close(w.detach(), true_w, atol=1e-2, rtol=0)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1e-3), r"lr=-0\.001"),
    (dict(eps=-1.0), r"eps=-1\.0"),
    (dict(betas=(1.0, 0.999)), r"betas\[0\]=1\.0"),
    (dict(betas=(0.9, -0.1)), r"betas\[1\]=-0\.1"),
    (dict(weight_decay=-0.01), r"weight_decay=-0\.01"),
])
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_invalid_param_group_hyperparameters():
    opt = AdamW([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match=r"lr=-1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": -1})


def test_sparse_gradients_are_rejected():
    embedding = torch.nn.Embedding(10, 4, sparse=True)
    opt = AdamW(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients.*SparseAdam"):
        opt.step()
