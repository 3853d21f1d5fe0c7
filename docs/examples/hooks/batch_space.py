"""A search space: the batch size and the sequence length, for `platform study`."""

from core.api import Component, hookimpl


def batch_space(trial, base):
    return {"batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
            "max_length": trial.suggest_int("max_length", 64, 128, step=32)}


@hookimpl
def platform_search_spaces():
    return [Component("batches", batch_space, help="batch size and max length")]
