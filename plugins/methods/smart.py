"""SMART regularization (Jiang et al. 2020), opt-in: ``--plugins smart``.

Two terms join every task loss. The smoothness-inducing adversarial term λ·l_s(f(x+δ), f(x)) asks the
model to answer the same under a small perturbation δ of the embedding-layer output, found by K steps
of projected gradient ascent on l_s inside an ε-ball. The Bregman proximal term μ·l_s(f(x), f̃(x))
keeps the model near f̃, a momentum (EMA) copy of itself, updated after every optimizer step.

l_s is the divergence of the task's head output, looked up in :data:`DIVERGENCES` by the form its kind
declares (``TaskKind.output``): symmetric KL over class probabilities (``class-logits``), over the
two-point Bernoulli distribution (``binary-logit``: a softmax over a single logit is constant, so it
would measure nothing), the squared error of regression scores (``score``), or symmetric KL of the tag
distributions at each tagged token (``token-logits``). A kind with an output of its own adds its
divergence through the hook this plugin declares, ``platform_smart_divergences``.

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
import torch.nn.functional as F
from attrs import validators as v

from core.api import (
    Batch,
    Component,
    ConfigError,
    MultitaskModel,
    Regularizer,
    RegularizerFactory,
    TrainingRun,
    field,
    hookimpl,
    hookspec,
    perturbed_embeddings,
)

PLATFORM_OPT_IN = True

NAME = "smart"
TINY = 1e-12  # keeps gradient normalisation finite when a gradient vanishes
BF16_RESOLUTION = 2.0**-8  # relative spacing of bfloat16 numbers (8 bits of mantissa)

log = logging.getLogger("platform")

# --------------------------------------------------------------------------------------------------
# Divergences of two head outputs of one batch, by the form of the output: symmetric, zero for equal
# outputs, means over examples
# --------------------------------------------------------------------------------------------------


def symmetric_kl_logits(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) of p = softmax(a), q = softmax(b), summed over classes; (N, C) -> scalar."""
    log_p, log_q = F.log_softmax(a.float(), dim=-1), F.log_softmax(b.float(), dim=-1)
    # KL(p‖q) + KL(q‖p) = Σ p(log p − log q) + Σ q(log q − log p) = Σ (p − q)(log p − log q)
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(-1).mean()


def symmetric_kl_bernoulli(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric KL of the Bernoulli distributions [σ(a), 1 − σ(a)] and [σ(b), 1 − σ(b)] of one logit.
    With log σ(z) − log σ(−z) = z, the (p − q)(log p − log q) sum collapses to (σ(a) − σ(b))(a − b):
    no logarithm of a saturated probability, hence stable for any logit."""
    a, b = a.float().reshape(len(a), -1), b.float().reshape(len(b), -1)  # (B, 1)
    return ((torch.sigmoid(a) - torch.sigmoid(b)) * (a - b)).sum(-1).mean()


def squared_error(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference of regression scores (on the label range scaled to [0, 1])."""
    return (a.float() - b.float()).pow(2).mean()


def tagged_symmetric_kl(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`symmetric_kl_logits` of (B, T, C) tag logits at the tagged positions (label not -100)."""
    tagged = labels != -100  # (B, T): the first pieces of the words
    return symmetric_kl_logits(a[tagged], b[tagged])


Divergence = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]  # (a, b, labels)
Measure = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # a divergence of one batch's outputs: (a, b)
DIVERGENCES: dict[str, Divergence] = {"class-logits": symmetric_kl_logits, "binary-logit": symmetric_kl_bernoulli,
                                      "score": squared_error, "token-logits": tagged_symmetric_kl}


class SmartHooks:
    """The hook SMART declares for task kinds of other plugins."""

    @hookspec
    def platform_smart_divergences(self) -> dict[str, Divergence]:
        """SMART's divergences of head outputs of the forms a plugin's task kinds declare
        (``TaskKind.output``): ``{output: divergence(a, b, labels)}``, symmetric, zero for equal outputs,
        a mean over examples."""
        return {}


PLATFORM_HOOKSPECS = SmartHooks


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

    def __init__(self, settings: SmartConfig | None, model: torch.nn.Module):
        self.config = settings or SmartConfig()
        self.divergences = dict(DIVERGENCES)
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

    @hookimpl
    def platform_on_train_start(self, run: TrainingRun) -> None:
        """Add the divergences other plugins provide, and refuse a task whose head output has none."""
        for provided in run.pm.hook.platform_smart_divergences():
            self.divergences.update(provided)
        for task in run.model.tasks.values():
            self.divergence_of(task)

    def divergence_of(self, task) -> Divergence:
        output = task.kind.output(task.spec)
        if output not in self.divergences:
            raise ConfigError(f"smart: task {task.name!r} (kind {task.kind.name}) outputs {output!r}, for which SMART "
                              f"has no divergence (it has: {', '.join(self.divergences)}); its kind's plugin can add "
                              "one through the hook platform_smart_divergences")
        return self.divergences[output]

    def terms(self, model, batch: Batch, output, forward, progress):
        measure = self.divergence_of(model.tasks[batch.task])

        def divergence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return measure(a, b, batch.labels)

        terms = {}
        if self.config.weight > 0:
            delta = self.perturbation(model, batch, output, forward, divergence)
            with perturbed_embeddings(model, lambda emb: emb + delta):  # gradients reach every parameter
                perturbed = forward()
            terms["adversarial"] = self.config.weight * divergence(perturbed, output)
        if self.teacher is not None:
            with torch.no_grad():
                target = self._teacher_on(self.teacher, output.device)(batch)
            terms["bregman"] = self.config.bregman_weight * divergence(output, target)
        return terms

    def perturbation(self, model: MultitaskModel, batch: Batch, output: torch.Tensor,
                     forward: Callable[[], torch.Tensor], divergence: Measure) -> torch.Tensor:
        """δ after K projected ascent steps on l_s(f(x + δ), f(x)), zero on padding; detached."""
        config, clean = self.config, output.detach()
        mask = batch.attention_mask.unsqueeze(-1).to(output.device)  # (N, T, 1)
        held: dict[str, torch.Tensor] = {}  # δ, made at the first forward: its shape is the embedding output's

        def perturb(emb: torch.Tensor) -> torch.Tensor:  # emb: (N, T, H)
            if "delta" not in held:  # δ0 ~ N(0, σ²)
                held["delta"] = (torch.randn_like(emb) * config.noise * mask).requires_grad_()
            return emb.detach() + held["delta"]  # the ascent needs ∂/∂δ only: no path into the embeddings

        for _ in range(config.steps):
            with perturbed_embeddings(model, perturb):
                (grad,) = torch.autograd.grad(divergence(forward(), clean), held["delta"])
            step = config.step_size * normalize(grad * mask, config.norm)
            held["delta"] = project(held["delta"].detach() + step, config.epsilon,
                                    config.norm).requires_grad_()  # padding stays 0
        return held["delta"].detach()

    def _teacher_on(self, teacher: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if next(teacher.parameters()).device != device:  # the model moved after the copy was taken
            teacher.to(device)
        return teacher

    @hookimpl
    def platform_on_after_optimizer_step(self, run: TrainingRun) -> None:
        self.update_teacher(run.model)

    def update_teacher(self, model: torch.nn.Module) -> None:
        """teacher ← β·teacher + (1 − β)·model."""
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


def smart_space(trial, base) -> dict:
    """λ (``smart_weight``), ε, η and μ on log scales around the minBERT report's defaults."""
    return {
        "weight": trial.suggest_float("smart_weight", 0.1, 20.0, log=True),
        "epsilon": trial.suggest_float("smart_epsilon", 1e-6, 1e-4, log=True),
        "step_size": trial.suggest_float("smart_step_size", 1e-4, 1e-2, log=True),
        "bregman_weight": trial.suggest_float("smart_bregman_weight", 0.1, 2.0, log=True),
    }


@hookimpl
def platform_regularizers() -> list[Component[RegularizerFactory]]:
    return [Component(NAME, Smart, settings=SmartConfig, space=smart_space,
                      help="SMART: adversarial smoothness on the embeddings plus a Bregman momentum-teacher term")]
