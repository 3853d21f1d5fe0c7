"""Training-loop hooks: a journal of the run, one JSON line per event, in the run's own folder."""

import json

from core.hookspecs import hookimpl

NAME = "journal"


def write(run, **event):
    with open(run.output_dir / "journal.jsonl", "a") as handle:
        handle.write(json.dumps({"step": run.global_step, **event}) + "\n")


@hookimpl
def platform_on_train_start(run):
    run.plugin_state[NAME] = {"largest_loss": 0.0}
    write(run, event="train_start", tasks=list(run.model.tasks))


@hookimpl
def platform_on_epoch_start(run, epoch):
    write(run, event="epoch_start", epoch=epoch)


@hookimpl
def platform_on_before_backward(run, task, loss, terms):
    state = run.plugin_state[NAME]
    state["largest_loss"] = max(state["largest_loss"], terms["loss"])


@hookimpl
def platform_on_after_step(run, step, losses):
    if step % run.config.log_every == 0:
        write(run, event="step", losses=losses)


@hookimpl
def platform_on_evaluate_end(run, split, metrics):
    write(run, event="evaluate", split=split, metrics=metrics)


@hookimpl
def platform_on_epoch_end(run, epoch, metrics):
    write(run, event="epoch_end", epoch=epoch, largest_loss=run.plugin_state[NAME]["largest_loss"])


@hookimpl
def platform_on_train_end(run, metrics):
    write(run, event="train_end", best=metrics)
