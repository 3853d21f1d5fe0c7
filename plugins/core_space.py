"""The core's search space: learning rate, warm-up, dropout and pooling (and layer-wise rate decay and
the heads' rate multiplier when the encoder trains).

Always on. ``platform study`` asks every active search space for overrides of the base
configuration; this one covers the settings every run has. Narrow or fix any of them with a space
file (``docs/studies.md``).
"""

from __future__ import annotations

from core.config import RunConfig
from core.hookspecs import hookimpl


def core_space(trial, base: RunConfig) -> dict:
    """``lr`` (log scale; 1e-5..1e-3 when fine-tuning, 1e-4..1e-2 when only the heads train), ``warmup``,
    ``dropout``, ``pooling``, and ``layer_decay`` and ``head_lr_multiplier`` (log, 1..100) when the encoder
    trains."""
    low, high = (1e-4, 1e-2) if base.mode == "pretrain" else (1e-5, 1e-3)
    overrides = {
        "lr": trial.suggest_float("lr", low, high, log=True),
        "warmup": trial.suggest_float("warmup", 0.0, 0.2),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "pooling": trial.suggest_categorical("pooling", ["cls", "mean"]),
    }
    if base.mode == "finetune":  # a frozen encoder has no layers to decay
        overrides["layer_decay"] = trial.suggest_float("layer_decay", 0.5, 1.0)
        overrides["head_lr_multiplier"] = trial.suggest_float("head_lr_multiplier", 1.0, 100.0, log=True)
    return overrides


@hookimpl
def platform_register_search_spaces(register):
    register("core", core_space, help="lr, warmup, dropout, pooling, and layer_decay and head_lr_multiplier when "
                                      "fine-tuning")
