"""A model transform: freeze the embeddings and the lowest layers of the encoder, which then train neither
nor take optimizer memory. Opt-in: `--plugins freeze`, how many layers with `--freeze-layers`."""

import attrs

from core.api import Component, field, hookimpl

PLATFORM_OPT_IN = True


@attrs.frozen
class FreezeConfig:
    layers: int = field(1, "how many of the lowest encoder layers to freeze, besides the embeddings")


def freeze(settings, model, config):
    frozen = [model.encoder.embeddings, *model.encoder.encoder.layer[:settings.layers]]
    for module in frozen:
        module.requires_grad_(False)


@hookimpl
def platform_model_transforms():
    return [Component("freeze", freeze, settings=FreezeConfig, help="freeze the embeddings and the lowest layers")]
