"""A regularizer: L2-SP (Li et al., 2018), a penalty on the encoder's distance from its pretrained
weights. Opt-in: `--plugins l2sp`, tuned with `--l2sp-weight`."""

import attrs

from core.api import Component, Regularizer, field, hookimpl

PLATFORM_OPT_IN = True


@attrs.frozen
class L2SPConfig:
    weight: float = field(0.01, "α, weight of the squared distance from the pretrained encoder")


class L2SP(Regularizer):
    def __init__(self, settings, model):
        self.config = settings or L2SPConfig()
        self.start = [p.detach().clone() for p in model.encoder.parameters()]

    def terms(self, model, batch, output, forward, progress):
        distance = sum(((p - p0) ** 2).sum() for p, p0 in zip(model.encoder.parameters(), self.start))
        return {"distance": self.config.weight * distance}

    def state_dict(self):
        return {"start": self.start}

    def load_state_dict(self, state):
        self.start = state["start"]


@hookimpl
def platform_regularizers():
    return [Component("l2sp", L2SP, settings=L2SPConfig, help="L2-SP: stay near the pretrained encoder")]
