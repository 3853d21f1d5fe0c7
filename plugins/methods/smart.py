"""SMART regularization (Jiang et al. 2020), opt-in: ``--plugins smart``.

Two terms join every task loss. The smoothness-inducing adversarial term λ·l_s(f(x+δ), f(x)) asks the
model to answer the same under a small perturbation δ of the embedding-layer output, found by K steps
of projected gradient ascent on l_s inside an ε-ball. The Bregman proximal term μ·l_s(f(x), f̃(x))
keeps the model near f̃, a momentum (EMA) copy of itself, updated after every optimizer step.

l_s is the task kind's divergence (``TaskKind.divergence``): for the built-in kinds, symmetric KL over
class probabilities (class logits), over the two-point Bernoulli distribution (one logit: a softmax
over a single logit is constant, so it would measure nothing), the squared error of regression scores,
or symmetric KL of the tag distributions at each tagged token.

Under torchrun each process perturbs its own shard: the ascent on δ differentiates with respect to δ
only, through the model itself rather than its ``DistributedDataParallel`` wrapper, so it reduces
nothing; the perturbed forward adds to the one backward that DDP averages. Every process updates the
teacher from the same averaged parameters, so the teachers stay identical without communication.
"""

from __future__ import annotations

import copy
import logging
from typing import Callable

import attrs
import torch
from attrs import validators as v

from core.api import Batch, ConfigError, Regularizer, field, hookimpl, perturbed_embeddings

PLATFORM_OPT_IN = True

NAME = "smart"
TINY = 1e-12  # keeps gradient normalisation finite when a gradient vanishes
BF16_RESOLUTION = 2.0**-8  # relative spacing of bfloat16 numbers (8 bits of mantissa)

log = logging.getLogger("platform")

Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------
# Projected gradient ascent on δ, per example (one row of the stacked (texts·B, T, H) embeddings)
# --------------------------------------------------------------------------------------------------


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *[1] * (like.dim() - 1))  # (N,) -> (N, 1, 1), to broadcast over (T, H)


def normalize(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Scale each example's gradient to unit ℓ∞ (``inf``) or ℓ2 (``l2``) norm over (T, H)."""
    flat = grad.flatten(1)  # (N, T·H)
    size = flat.abs().amax(dim=1) if norm == "inf" else flat.norm(dim=1)
    return grad / (_per_example(size, grad) + TINY)


def project(delta: torch.Tensor, epsilon: float, norm: str) -> torch.Tensor:
    """δ onto the ε-ball of each example: clamp (``inf``) or rescale when ‖δ‖₂ > ε (``l2``)."""
    if norm == "inf":
        return delta.clamp(-epsilon, epsilon)
    length = delta.flatten(1).norm(dim=1)  # (N,)
    return delta * _per_example((epsilon / (length + TINY)).clamp(max=1.0), delta)


# --------------------------------------------------------------------------------------------------
# The regularizer
# --------------------------------------------------------------------------------------------------


@attrs.frozen
class SmartConfig:
    """Settings of ``--plugins smart`` (``--smart-weight``, ...); defaults are the paper's."""

    weight: float = field(5.0, "λ, weight of the adversarial smoothness term (0: off)", validator=v.ge(0.0))
    epsilon: float = field(1e-5, "ε, radius of the perturbation ball around the embedding output", validator=v.gt(0.0))
    step_size: float = field(1e-3, "η, step of each gradient-ascent step on the perturbation", validator=v.gt(0.0))
    noise: float = field(1e-5, "σ, standard deviation of the initial random perturbation", validator=v.gt(0.0))
    steps: int = field(1, "K, gradient-ascent steps per batch (each costs a forward and a backward)",
                       validator=v.ge(1))
    norm: str = field("inf", "ball of the perturbation: inf (ℓ∞, per example) or l2", validator=v.in_(("inf", "l2")))
    momentum: float = field(0.995, "β of the Bregman teacher: teacher ← β·teacher + (1 − β)·model after each step",
                            validator=[v.ge(0.0), v.lt(1.0)])
    bregman_weight: float = field(1.0, "μ, weight of the Bregman proximal term (0: no teacher copy, no term)",
                                  validator=v.ge(0.0))


class Smart(Regularizer):
    """Adversarial smoothness term plus Bregman proximal point term against a momentum teacher."""

    def __init__(self, config: SmartConfig | None, model: torch.nn.Module):
        self.config = config or SmartConfig()
        if getattr(model, "precision", "fp32") == "bf16" and self.config.weight > 0 \
                and self.config.epsilon < BF16_RESOLUTION:
            log.warning("smart: the model computes in bf16 (--precision), whose resolution (~%.0e of a value) is "
                        "coarser than the perturbation radius --smart-epsilon %g: the perturbed forward barely "
                        "sees it, and the adversarial term mostly measures dropout noise. Use --precision fp32 "
                        "to study small perturbations.", BF16_RESOLUTION, self.config.epsilon)
        self.teacher: torch.nn.Module | None = None
        if self.config.bregman_weight > 0:
            self.teacher = copy.deepcopy(model).eval()  # f̃: dropout off, never trained directly
            self.teacher.requires_grad_(False)

    def terms(self, model, batch: Batch, output, forward, progress):
        task = model.tasks[batch.task]

        def divergence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return task.kind.divergence(task.spec, a, b, batch.labels)

        terms = {}
        if self.config.weight > 0:
            delta = self.perturbation(model, batch, output, forward, divergence)
            with perturbed_embeddings(model, lambda emb: emb + delta):  # gradients reach every parameter
                perturbed = forward()
            terms["adversarial"] = self.config.weight * divergence(perturbed, output)
        if self.teacher is not None:
            with torch.no_grad():
                target = self._teacher_on(output.device)(batch)
            terms["bregman"] = self.config.bregman_weight * divergence(output, target)
        return terms

    def perturbation(self, model: torch.nn.Module, batch: Batch, output: torch.Tensor, forward: Callable[[], torch.Tensor],
                     divergence: Divergence) -> torch.Tensor:
        """δ after K projected ascent steps on l_s(f(x + δ), f(x)), zero on padding; detached."""
        config, clean = self.config, output.detach()
        mask = batch.attention_mask.unsqueeze(-1).to(output.device)  # (N, T, 1)
        delta = None

        def perturb(emb: torch.Tensor) -> torch.Tensor:  # emb: (N, T, H)
            nonlocal delta
            if delta is None:  # δ0 ~ N(0, σ²) of the embedding output's shape, known only here
                delta = (torch.randn_like(emb) * config.noise * mask).requires_grad_()
            return emb.detach() + delta  # the ascent needs ∂/∂δ only: no path into the embeddings

        for _ in range(config.steps):
            with perturbed_embeddings(model, perturb):
                (grad,) = torch.autograd.grad(divergence(forward(), clean), delta)
            step = config.step_size * normalize(grad * mask, config.norm)
            delta = project(delta.detach() + step, config.epsilon, config.norm).requires_grad_()  # padding stays 0
        return delta.detach()

    def _teacher_on(self, device: torch.device) -> torch.nn.Module:
        if next(self.teacher.parameters()).device != device:  # the model moved after the copy was taken
            self.teacher.to(device)
        return self.teacher

    def after_step(self, model: torch.nn.Module) -> None:
        if self.teacher is None:
            return
        teacher, current = _floating_tensors(self.teacher), _floating_tensors(model)
        beta = self.config.momentum
        with torch.no_grad():
            torch._foreach_mul_(teacher, beta)
            torch._foreach_add_(teacher, current, alpha=1.0 - beta)

    def state_dict(self) -> dict:
        return {} if self.teacher is None else {"teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if (self.teacher is None) != ("teacher" not in state):
            has = "has a teacher" if "teacher" in state else "has none"
            raise ConfigError(f"smart: the checkpoint {has}, but --smart-bregman-weight is "
                             f"{self.config.bregman_weight}; resume with the setting the run was started with")
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])


def _floating_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters then buffers, floating point only, in registration order (equal for a deep copy)."""
    tensors = [*model.parameters(), *model.buffers()]
    return [t.detach() for t in tensors if t.is_floating_point()]


# --------------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------------


@hookimpl
def platform_register_regularizers(register):
    register(NAME, Smart, config=SmartConfig,
             help="SMART: adversarial smoothness on the embeddings plus a Bregman momentum-teacher term")


def smart_space(trial, base) -> dict:
    """λ (``smart_weight``), ε, η and μ on log scales around the minBERT report's defaults."""
    return {"components": {NAME: {
        "weight": trial.suggest_float("smart_weight", 0.1, 20.0, log=True),
        "epsilon": trial.suggest_float("smart_epsilon", 1e-6, 1e-4, log=True),
        "step_size": trial.suggest_float("smart_step_size", 1e-4, 1e-2, log=True),
        "bregman_weight": trial.suggest_float("smart_bregman_weight", 0.1, 2.0, log=True),
    }}}


@hookimpl
def platform_register_search_spaces(register):
    register(NAME, smart_space, help="SMART's λ, ε, η and μ (smart_weight, smart_epsilon, smart_step_size, "
                                     "smart_bregman_weight)")
