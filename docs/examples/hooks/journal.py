"""Training-loop hooks: a journal of the run, one JSON line per event, in the run's own folder."""

import json

from core.api import hookimpl, is_main

NAME = "journal"


def write(run, **event):
    if is_main():  # under torchrun every process calls every hook; one writes
        with open(run.output_dir / "journal.jsonl", "a") as handle:
            handle.write(json.dumps({"step": run.global_step, **event}) + "\n")


@hookimpl
def platform_on_train_start(run):
    run.plugin_state[NAME] = {"batches": 0, "steps": 0}
    write(run, event="train_start", tasks=list(run.model.tasks))


@hookimpl
def platform_on_epoch_start(run, epoch):
    write(run, event="epoch_start", epoch=epoch)


@hookimpl
def platform_on_before_backward(run, task, loss, terms):
    run.plugin_state[NAME]["batches"] += 1  # terms are tensors on the device: read them only when logging


@hookimpl
def platform_on_after_step(run, step, losses):
    run.plugin_state[NAME]["steps"] += 1


@hookimpl
def platform_on_log(run, step, losses):
    write(run, event="log", losses=losses)  # floats: means over every process since the last log point


@hookimpl
def platform_on_evaluate_end(run, split, metrics):
    write(run, event="evaluate", split=split, metrics=metrics)


@hookimpl
def platform_on_epoch_end(run, epoch, metrics):
    write(run, event="epoch_end", epoch=epoch, **run.plugin_state[NAME])


@hookimpl
def platform_on_train_end(run, metrics):
    write(run, event="train_end", best=metrics)
