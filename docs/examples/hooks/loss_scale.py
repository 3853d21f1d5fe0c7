"""A balancer: each task's loss divided by its running mean, so every task weighs about 1 whatever the
scale of its loss. Opt-in: `--plugins loss-scale --update summed`."""

import attrs
import torch

from core.api import Balancer, Component, field, hookimpl

PLATFORM_OPT_IN = True


@attrs.frozen
class LossScaleConfig:
    decay: float = field(0.9, "how much of the running mean a new loss leaves", validator=attrs.validators.lt(1.0))


class LossScale(Balancer):
    observes_losses = True

    def __init__(self, settings, tasks, seed):
        super().__init__(tasks, seed)
        self.decay, self.means = settings.decay, {}

    def weights(self, tasks, step):
        return {task: 1.0 / self.means[task] for task in tasks if task in self.means}

    def update(self, losses, step):
        for task, loss in losses.items():
            previous = self.means.get(task, loss.cpu())
            self.means[task] = self.decay * previous + (1 - self.decay) * loss.cpu()

    def state_dict(self):
        return {"means": dict(self.means)}

    def load_state_dict(self, state):
        self.means = {task: torch.as_tensor(mean) for task, mean in state.get("means", {}).items()}


@hookimpl
def platform_balancers():
    return [Component("loss-scale", LossScale, settings=LossScaleConfig,
                      help="each task's loss over its running mean: every task weighs about 1")]
