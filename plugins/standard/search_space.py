"""The core's search space: learning rate, warm-up, dropout and pooling (and layer-wise rate decay and
the heads' rate multiplier when the encoder trains, and the tasks' loss weights when there are several).

Always on. ``platform study`` asks every active search space for overrides of the base
configuration; this one covers the settings every run has. Narrow or fix any of them with a space
file (``docs/studies.md``).
"""

from __future__ import annotations

from core.api import Component, RunConfig, SearchSpace, hookimpl


def core_space(trial, base: RunConfig) -> dict:
    """``lr`` (log scale; 1e-5..1e-3 when fine-tuning, 1e-4..1e-2 when only the heads train), ``warmup``,
    ``dropout``, ``pooling``, ``layer_decay`` and ``head_lr_multiplier`` (log, 1..100) when the encoder
    trains, and ``loss_weight_<task>`` (log, 0.1..50; ``--loss-weights``) for every task but the first when
    there are several. The first task keeps weight 1: AdamW is blind to one scale on every loss, so only
    the ratios between tasks matter."""
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
    if len(base.tasks) > 1:
        weights = {task: trial.suggest_float(f"loss_weight_{task}", 0.1, 50.0, log=True) for task in base.tasks[1:]}
        overrides["loss_weights"] = ",".join(f"{task}={weight:g}" for task, weight in weights.items())
    return overrides


@hookimpl
def platform_search_spaces() -> list[Component[SearchSpace]]:
    return [Component("core", core_space, help="lr, warmup, dropout, pooling; layer_decay and head_lr_multiplier "
                                               "when fine-tuning; loss_weight_<task> (all but the first task) when "
                                               "multitask")]
