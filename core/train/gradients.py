"""Task gradients kept apart: which parameters the tasks share, and their gradients as flat rows.

A gradient-based balancer (:mod:`core.train.balancer`) sees each task's gradient of the shared
parameters as one row of a matrix. A parameter is a task's own when it sits in that task's head and in no
other task's head; every other trainable parameter (the encoder, a topology's shared layers) is shared.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn as nn


@attrs.frozen
class ParameterSplit:
    """The trainable parameters of a model, shared ones apart from each task's own."""

    shared: list[nn.Parameter]
    owned: dict[str, list[nn.Parameter]]


def split_parameters(model: nn.Module, heads: nn.ModuleDict) -> ParameterSplit:
    """The trainable parameters of ``model`` split by who uses them: a task's own ones sit only in its head
    of ``heads`` (task name -> head); the rest are shared."""
    holders: dict[int, set[str]] = {}
    for task, head in heads.items():
        for parameter in head.parameters():
            holders.setdefault(id(parameter), set()).add(task)
    owned: dict[str, list[nn.Parameter]] = {task: [] for task in heads}
    shared: list[nn.Parameter] = []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        tasks = holders.get(id(parameter), set())
        if len(tasks) == 1:
            owned[next(iter(tasks))].append(parameter)
        else:
            shared.append(parameter)
    return ParameterSplit(shared, owned)


def take_gradient(parameters: list[nn.Parameter]) -> torch.Tensor:
    """The gradients of ``parameters`` as one flat float32 row (zeros where a parameter got none), each
    parameter's gradient then cleared for the next task's backward."""
    parts = []
    for parameter in parameters:
        if parameter.grad is None:
            parts.append(torch.zeros(parameter.numel(), device=parameter.device))
        else:
            parts.append(parameter.grad.detach().reshape(-1).float())
            parameter.grad = None
    return torch.cat(parts)


def put_gradient(parameters: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Set the gradients of ``parameters`` from one flat row, as :func:`take_gradient` laid it out."""
    offset = 0
    for parameter in parameters:
        size = parameter.numel()
        parameter.grad = flat[offset:offset + size].view_as(parameter).to(parameter.dtype).clone()
        offset += size


def scale_gradient(parameters: list[nn.Parameter], factor: torch.Tensor) -> None:
    """Multiply the gradients of ``parameters`` (those that have one) by ``factor``."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.mul_(factor.to(parameter.grad.dtype))


def cosines(grads: torch.Tensor) -> torch.Tensor:
    """The (T, T) cosine similarities between the rows of ``grads`` (0 where a row is all zeros)."""
    norms = grads.norm(dim=1, keepdim=True)
    unit = grads / norms.clamp_min(torch.finfo(grads.dtype).tiny)
    return unit @ unit.T
