"""A head topology: tasks of the same kind and label space share one head. Opt-in: `--plugins tied`."""

import torch.nn as nn

from core.api import Component, hookimpl

PLATFORM_OPT_IN = True


def tied_heads(settings, tasks, widths, dropout):
    shared = {}
    for task in tasks:  # the first task of each (kind, labels) builds the head the others reuse
        key = (task.kind.name, task.spec.num_labels, task.spec.labels)
        shared.setdefault(key, task.build_head(widths, dropout))
    return nn.ModuleDict({task.name: shared[(task.kind.name, task.spec.num_labels, task.spec.labels)]
                          for task in tasks})


@hookimpl
def platform_topologies():
    return [Component("tied", tied_heads, help="tasks of the same kind and label space share one head")]
