"""BAM: Born-Again Multi-task networks (Clark et al., 2019), as an opt-in plugin (``--plugins bam``).

Single-task teachers, trained by the platform earlier (``platform run --tasks sst …``), are distilled
into the multitask student. ``--bam-teachers sst=runs/sst-teacher,quora=runs/q`` names them; tasks
without a teacher train on gold labels only.

Each teacher predicts its task's training split once, at the start of training: head outputs (class
logits, one logit, or the score on the [0, 1]-scaled label range), cached in ``<run>/bam/<task>-teacher.pt``
under the teacher's path, the number of examples and a digest of their ids, so a resumed run reloads
them instead of recomputing. A teacher whose vocabulary or ``max_length`` differs from the student's
re-tokenizes the same rows itself. A batch looks its teacher outputs up by ``Batch.indices``. Under
torchrun every process predicts its share of the teacher's batches and receives all the outputs
(``head_outputs``); the main process reads and writes the cache.

Teacher annealing: the teacher weight ``w`` falls linearly from 1 at the start of training to 0 at
the end (``w = 1 - progress``; ``w = 1`` throughout with ``--bam-anneal false``). The gold-label task
loss is scaled by ``1 - w`` (:meth:`BamRegularizer.task_loss_weight`) and the term
``distill = w · L_teacher`` is added, where ``L_teacher`` is the task kind's distillation loss; for
the built-in kinds (``plugins/standard/kinds.py``):

- ``class-logits``: cross-entropy against the teacher's ``softmax(logits / T)``, of the student's
  ``logits / T``, times ``T²`` (Hinton et al.'s scaling, so gradients keep their size as T changes);
- ``binary-logit``: the same for the two-class case, BCE-with-logits of ``logit / T`` against
  ``sigmoid(teacher_logit / T)``, times ``T²``;
- ``score``: squared error against the teacher's score (no temperature);
- ``token-logits`` (token tagging) has none: a teacher for such a task is refused by name.

At T = 1 these losses are linear in the target, so ``w · L(teacher) + (1 - w) · L(gold)`` *is* the
loss against the mixed target ``w · teacher + (1 - w) · gold`` — training on the annealed mixture of
the paper. For mse the two differ by ``w(1 - w)(teacher - gold)²``, which does not depend on the
student, so the gradients are the same.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import attrs
import torch
import torch.nn.functional as F

from core.api import (
    Batch,
    Component,
    PlatformError,
    Regularizer,
    RegularizerFactory,
    Task,
    assignments,
    field,
    head_outputs,
    hookimpl,
    hookspec,
    is_main,
    load_run,
    load_split,
    load_state,
    on_main,
    positive,
    resolve_data_dir,
    rng_state,
    save_state,
    set_rng_state,
)

if TYPE_CHECKING:
    from core.api import TrainingRun

PLATFORM_OPT_IN = True

NAME = "bam"
log = logging.getLogger("platform")


class BamError(PlatformError):
    """A teacher is missing, was trained on other tasks, or does not fit the student's task."""


@attrs.frozen
class BamConfig:
    teachers: dict[str, str] = field(attrs.Factory(dict), "single-task teacher runs, e.g. "
                                     "sst=runs/sst-teacher,quora=runs/q (a run folder or its best.pt); tasks left "
                                     "out train on gold labels only",
                                     converter=assignments(str, "TASK=RUN_DIR, e.g. sst=runs/sst-teacher"),
                                     metadata={"metavar": "TASK=RUN_DIR,..."})
    anneal: bool = field(True, "teacher annealing: the teacher's weight falls from 1 to 0 over training "
                               "(false: students learn from the teachers alone)")
    temperature: float = field(1.0, "softmax temperature of the teacher targets (classification tasks)",
                               validator=positive)


# --------------------------------------------------------------------------------------------------
# The losses
# --------------------------------------------------------------------------------------------------


def teacher_weight(progress: float, anneal: bool = True) -> float:
    """Weight of the teacher target: 1 at the start of training, 0 at the end (1 throughout without annealing)."""
    return 1.0 - min(max(progress, 0.0), 1.0) if anneal else 1.0


def soft_cross_entropy(output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of ``output / T`` against ``softmax(teacher / T)``, times T² (Hinton et al.'s
    scaling, so gradients keep their size as T changes); (N, C) -> scalar."""
    t = temperature
    soft = F.softmax(teacher.float() / t, dim=-1)
    return -(soft * F.log_softmax(output.float() / t, dim=-1)).sum(-1).mean() * t * t


def soft_binary_cross_entropy(output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """The two-class case of :func:`soft_cross_entropy` on one logit."""
    t = temperature
    soft = torch.sigmoid(teacher.float().view(-1) / t)
    return F.binary_cross_entropy_with_logits(output.float().view(-1) / t, soft) * t * t


def score_error(output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Squared error against the teacher's score (scores have no temperature)."""
    return F.mse_loss(output.float().view(-1), teacher.float().view(-1))


DistillationLoss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (output, teacher, temperature)
DISTILLATION_LOSSES: dict[str, DistillationLoss] = {"class-logits": soft_cross_entropy,
                                                    "binary-logit": soft_binary_cross_entropy, "score": score_error}


class BamHooks:
    """The hook BAM declares for task kinds of other plugins."""

    @hookspec
    def platform_bam_distillation_losses(self) -> dict[str, DistillationLoss]:
        """BAM's distillation losses for head outputs of the forms a plugin's task kinds declare
        (``TaskKind.output``): ``{output: loss(student_output, teacher_output, temperature)}``, a mean over
        examples."""
        return {}


PLATFORM_HOOKSPECS = BamHooks


def teacher_loss(task: Task, output: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                 losses: dict[str, DistillationLoss] = DISTILLATION_LOSSES) -> torch.Tensor:
    """The loss of a student head output against the teacher's head output of the same examples."""
    return losses[task.kind.output(task.spec)](output, teacher, temperature)


# --------------------------------------------------------------------------------------------------
# Teacher outputs on the training split
# --------------------------------------------------------------------------------------------------


def _checkpoint_file(folder: str) -> Path:
    """The teacher's checkpoint: ``folder`` itself when it names a ``.pt`` file, else ``folder/best.pt``."""
    path = Path(folder).expanduser().resolve()
    return path if path.suffix == ".pt" else path / "best.pt"


def _ids_digest(ids: list[str]) -> str:
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]


def teacher_outputs(task: str, folder: str, run) -> torch.Tensor:
    """Load the teacher run in ``folder``, check that it fits ``task``, and predict the training
    examples of ``task`` in ``run`` (a :class:`core.trainer.TrainingRun`)."""
    path = _checkpoint_file(folder)
    if not path.is_file():
        raise BamError(f"bam: teacher of task {task!r}: no run checkpoint at {path}; train one with "
                       f"`platform run --tasks {task} --output-dir {folder}`")
    rng = rng_state()  # building the teacher reseeds torch: keep the student's random streams
    try:
        config, model, tokenizer = load_run(path)
    finally:
        set_rng_state(rng)
    if config.validation_split != run.config.validation_split:
        log.warning("bam: teacher %s held out --validation-split %s of its train file, this run %s: the teacher "
                    "trained on rows this run validates on, or the other way round; train the teachers with the "
                    "run's --validation-split", folder, config.validation_split, run.config.validation_split)
    if task not in model.tasks:
        raise BamError(f"bam: teacher {folder} of task {task!r} was trained on {', '.join(model.tasks)}, "
                       f"not on {task!r}; give a run trained on {task!r} (`platform run --tasks {task}`)")
    student = run.train_data[task]
    mine, theirs = student.task, model.tasks[task]
    if _head_shape(mine) != _head_shape(theirs):
        raise BamError(f"bam: the {task!r} head of teacher {folder} ({_head_shape(theirs)}) differs from this "
                       f"run's ({_head_shape(mine)})")
    data = student
    if (tokenizer.vocab_sha, config.max_length) != (run.tokenizer.vocab_sha, run.config.max_length):
        # Another vocabulary, casing or length: the teacher reads the same rows through its own tokenizer.
        data = load_split(mine, "train", data_dir=resolve_data_dir(run.config.data_dir), tokenizer=tokenizer,
                          max_length=config.max_length, limit=run.config.limit,
                          validation_split=run.config.validation_split)
        if data.ids != student.ids:
            raise BamError(f"bam: teacher {folder} reads other {task!r} training examples than this run "
                           f"({len(data)} rows vs {len(student)}); both must read the same data file")
    log.info("bam: teacher %s predicts the %d %s training examples", folder, len(data), task)
    return head_outputs(model, data, tokenizer.pad, run.config.eval_batch_size, progress=False)


def _head_shape(task: Task) -> str:
    spec = task.spec
    return f"kind {task.kind.name}, {spec.num_labels} label(s), range {tuple(spec.label_range)}"


def _cached_outputs(path: Path, key: tuple[str, int, str]) -> torch.Tensor | None:
    """The teacher outputs cached in ``path`` when they belong to ``key`` (teacher, examples, ids digest)."""
    cached = load_state(path) if path.is_file() else None
    if cached is not None and (cached["teacher"], cached["examples"], cached["ids"]) == key:
        return cached["outputs"]
    return None


# --------------------------------------------------------------------------------------------------
# The regularizer
# --------------------------------------------------------------------------------------------------


class BamRegularizer(Regularizer):
    """Distils the teachers of ``settings.teachers`` into the student, with teacher annealing."""

    def __init__(self, settings: BamConfig | None, model: torch.nn.Module):
        self.config = settings or BamConfig()
        self.teachers = dict(self.config.teachers)
        tasks = list(getattr(model, "tasks", {}))
        unknown = [task for task in self.teachers if task not in tasks]
        if unknown:
            raise BamError(f"bam: --bam-teachers names task(s) {', '.join(unknown)} that this run does not train; "
                           f"its tasks are {', '.join(tasks)}")
        if not self.teachers:
            log.warning("bam: enabled without --bam-teachers; every task trains on gold labels only")
        self.losses = dict(DISTILLATION_LOSSES)
        self.outputs: dict[str, torch.Tensor] = {}  # task -> teacher head outputs over its training split
        self.caches: dict[str, dict] = {}  # task -> {"teacher", "examples"} of its cache file in the run folder
        self.computed: list[str] = []  # tasks whose teacher outputs this process computed (not reloaded)

    @hookimpl
    def platform_on_train_start(self, run: TrainingRun) -> None:
        """Make the teacher outputs of every task with a teacher available: reload the cache in the run
        folder (``bam/<task>-teacher.pt``) when it belongs to the same teacher and split, otherwise predict
        and cache them. First, refuse a teacher for a task whose head output has no distillation loss."""
        for provided in run.pm.hook.platform_bam_distillation_losses():
            self.losses.update(provided)
        for name in self.teachers:
            bound = run.model.tasks[name]
            output = bound.kind.output(bound.spec)
            if output not in self.losses:
                raise BamError(f"bam: task {name!r} (kind {bound.kind.name}) outputs {output!r}, for which BAM has no "
                               f"distillation loss (it has: {', '.join(self.losses)}); leave it out of --bam-teachers, "
                               "or add a loss through the hook platform_bam_distillation_losses")
        for task, folder in self.teachers.items():
            teacher, examples = str(_checkpoint_file(folder)), len(run.train_data[task])
            path = run.output_dir / NAME / f"{task}-teacher.pt"  # always in the run folder, wherever it moved
            ids = _ids_digest(run.train_data[task].ids)
            outputs = on_main(_cached_outputs, path, (teacher, examples, ids))
            if outputs is None:
                outputs = teacher_outputs(task, folder, run)
                if is_main():
                    save_state(path, {"teacher": teacher, "examples": examples, "ids": ids, "outputs": outputs})
                self.computed.append(task)
            self.outputs[task] = outputs
            self.caches[task] = {"teacher": teacher, "examples": examples}

    @hookimpl
    def platform_on_before_backward(self, run: TrainingRun, task: str) -> None:
        step = run.global_step + 1  # the step being taken, as the training losses are logged
        if task in self.teachers and step % run.config.log_every == 0:
            run.writer.add_scalar(f"{NAME}/{task}/teacher_weight", self.weight(run.progress), step)

    def weight(self, progress: float) -> float:
        return teacher_weight(progress, self.config.anneal)

    def task_loss_weight(self, batch: Batch, progress: float) -> float:
        return 1.0 - self.weight(progress) if batch.task in self.teachers else 1.0

    def terms(self, model, batch, output, forward, progress) -> dict[str, torch.Tensor]:
        if batch.task not in self.teachers:
            return {}
        if batch.task not in self.outputs:
            raise BamError(f"bam: no teacher outputs for task {batch.task!r} yet; they are computed when the run "
                           "starts (platform_on_train_start)")
        teacher = self.outputs[batch.task][batch.indices].to(output.device)
        task = model.tasks[batch.task]
        return {"distill": self.weight(progress) * teacher_loss(task, output, teacher, self.config.temperature,
                                                                self.losses)}

    def state_dict(self) -> dict:
        return {"caches": {task: dict(cache) for task, cache in self.caches.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.caches = {task: {key: value for key, value in cache.items() if key != "path"}  # old files held a path
                       for task, cache in state.get("caches", {}).items()}


# --------------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------------


@hookimpl
def platform_regularizers() -> list[Component[RegularizerFactory]]:
    return [Component(NAME, BamRegularizer, settings=BamConfig,
                      help="Born-Again Multi-task networks: distil single-task teachers, with teacher annealing")]
