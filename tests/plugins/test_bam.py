"""BAM: teacher annealing, the soft-target losses, settings, and teachers distilled into a tiny student."""

import math
from pathlib import Path

import attrs
import pytest
import torch
import torch.nn.functional as F

from core.build.parts import RunParts
from core.build.run import prepare
from core.build.trained import load_run
from core.data.batch import Batch
from core.plugin.hookspecs import hookimpl
from core.plugin.manager import make_plugin_manager
from core.experiment.config import RunConfig, load_data
from core.tasks.splits import make_batch
from core.train.loop import train
from plugins.methods.bam import BamConfig, BamError, BamRegularizer, teacher_loss, teacher_outputs, teacher_weight


def teacher_config(tmp_path, data_dir, **changes):
    """The shape of the ``tiny_config`` fixture, for module-scoped runs: float32 like it, since the tests below
    compare a teacher's cached outputs with a fresh forward in other batches, exactly (under bf16 the encoder's
    results depend on the batch's padded shape, by ~3e-5 here)."""
    base = RunConfig(tasks=("sst",), checkpoint="tiny", limit=24, batch_size=8, eval_batch_size=16, max_length=32,
                     epochs=1, lr=1e-3, sampler="rrobin", save_every=2, log_every=1, data_dir=str(data_dir),
                     output_dir=str(tmp_path), threads=1, device="cpu", precision="fp32")
    return attrs.evolve(base, **changes)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, tiny_data_dir):
    """A single-task sst teacher trained by the platform."""
    out = tmp_path_factory.mktemp("bam") / "sst-teacher"
    train(prepare(teacher_config(out, tiny_data_dir)))
    return out


@pytest.fixture(scope="module")
def student_model():
    """A real tiny (sst, sts) model: the regularizer reads the student's tasks and heads from it."""
    config = RunConfig(tasks=("sst", "sts"), checkpoint="tiny", device="cpu")
    return RunParts(config).model()


def batch_of(task: str, indices: list[int], labels: torch.Tensor) -> Batch:
    empty = torch.zeros(len(indices), 1, dtype=torch.long)
    return Batch(task, empty, empty, empty, labels, [str(i) for i in indices], torch.tensor(indices))


# --------------------------------------------------------------------------------------------------
# Teacher annealing
# --------------------------------------------------------------------------------------------------


def test_teacher_weight_anneals_from_one_to_zero():
    assert [teacher_weight(p) for p in (0.0, 0.5, 1.0)] == [1.0, 0.5, 0.0]
    assert [teacher_weight(p, anneal=False) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]


def test_gold_loss_weight_is_the_complement_for_tasks_with_a_teacher(student_model):
    bam = BamRegularizer(BamConfig(teachers="sst=runs/none"), student_model)
    sst, sts = batch_of("sst", [0], torch.tensor([1])), batch_of("sts", [0], torch.tensor([2.0]))
    assert [bam.task_loss_weight(sst, p) for p in (0.0, 0.5, 1.0)] == [0.0, 0.5, 1.0]
    assert [bam.task_loss_weight(sts, p) for p in (0.0, 0.5, 1.0)] == [1.0, 1.0, 1.0]
    assert bam.terms(student_model, sts, torch.zeros(1, 1), None, 0.5) == {}
    constant = BamRegularizer(BamConfig(teachers="sst=runs/none", anneal=False), student_model)
    assert [constant.task_loss_weight(sst, p) for p in (0.0, 0.5, 1.0)] == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------
# The soft-target losses
# --------------------------------------------------------------------------------------------------


def test_soft_cross_entropy_by_hand(student_model):
    sst = student_model.tasks["sst"]
    student = torch.tensor([[0.0, math.log(3.0)]])  # softmax (1/4, 3/4)
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax (3/4, 1/4)
    expected = -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))
    assert teacher_loss(sst, student, teacher).item() == pytest.approx(expected)
    # T = 2: the same distributions from doubled logits, and the loss scaled by T² = 4
    assert teacher_loss(sst, 2 * student, 2 * teacher, temperature=2.0).item() == pytest.approx(4 * expected)


def test_soft_bce_by_hand():
    quora = RunParts(RunConfig(tasks=("quora",))).tasks["quora"]
    assert quora.spec.num_labels == 1  # one logit
    student, teacher = torch.tensor([[math.log(3.0)]]), torch.tensor([[0.0]])  # sigmoid 3/4 against 1/2
    expected = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    assert teacher_loss(quora, student, teacher).item() == pytest.approx(expected)
    assert teacher_loss(quora, 3 * student, 3 * teacher, temperature=3.0).item() == pytest.approx(9 * expected)


def test_mse_against_teacher_scores_by_hand(student_model):
    sts = student_model.tasks["sts"]
    loss = teacher_loss(sts, torch.tensor([[0.2], [0.8]]), torch.tensor([0.5, 0.5]), temperature=7.0)
    assert loss.item() == pytest.approx(0.09)  # ((0.3)² + (0.3)²) / 2; no temperature for scores


def test_mixture_equals_the_loss_against_the_mixed_target(student_model):
    torch.manual_seed(0)
    bam = BamRegularizer(BamConfig(teachers="sst=runs/a,sts=runs/b"), student_model)
    bam.outputs = {"sst": torch.randn(10, 5), "sts": torch.rand(10)}
    indices, progress = [7, 2, 4], 0.3
    w = teacher_weight(progress)

    def trained_loss(task, output, labels):  # how core.trainer.task_step combines the parts
        batch = batch_of(task, indices, labels)
        gold = student_model.tasks[task].loss(output, batch) * bam.task_loss_weight(batch, progress)
        return gold + bam.terms(student_model, batch, output, None, progress)["distill"]

    logits, classes = torch.randn(3, 5, requires_grad=True), torch.tensor([0, 3, 4])
    mixed = w * F.softmax(bam.outputs["sst"][indices], -1) + (1 - w) * F.one_hot(classes, 5)
    against_mixed = -(mixed * F.log_softmax(logits, -1)).sum(-1).mean()
    assert trained_loss("sst", logits, classes).item() == pytest.approx(against_mixed.item())

    scores, similarity = torch.rand(3, 1, requires_grad=True), torch.tensor([1.0, 4.5, 3.0])
    gold, teacher = similarity / 5.0, bam.outputs["sts"][indices]  # STS labels lie in [0, 5]
    mixed = w * teacher + (1 - w) * gold
    ours, reference = trained_loss("sts", scores, similarity), F.mse_loss(scores.view(-1), mixed)
    constant = w * (1 - w) * ((teacher - gold) ** 2).mean()  # independent of the student
    assert ours.item() == pytest.approx(reference.item() + constant.item())
    ours_grad, = torch.autograd.grad(ours, scores)
    reference_grad, = torch.autograd.grad(reference, scores)
    assert torch.allclose(ours_grad, reference_grad)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("teachers, message", [
    ("sst", "bad entry 'sst'; expected TASK=RUN_DIR"),
    ("sst=runs/a,=runs/b", "bad entry '=runs/b'"),
    ("sst=", "bad entry 'sst='"),
    ("sst=runs/a, sst=runs/b", "task 'sst' is given twice"),
])
def test_bad_teacher_entries_are_refused(teachers, message):
    with pytest.raises(ValueError, match=message):
        BamConfig(teachers=teachers)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        BamConfig(temperature=0.0)


def test_settings_errors_name_the_component(tiny_config):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("bam",), components={"bam": {"teachers": "sst"}})
    with pytest.raises(ValueError, match="settings of 'bam': --bam-teachers: bad entry 'sst'"):
        prepare(config)


def test_teacher_for_a_task_the_run_does_not_train(tiny_config):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("bam",),
                          components={"bam": {"teachers": "quora=runs/q"}})
    with pytest.raises(BamError, match="names task\\(s\\) quora that this run does not train; its tasks are sst, sts"):
        prepare(config)


# --------------------------------------------------------------------------------------------------
# Teachers distilled into a tiny student
# --------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


class StopAtSecondEpoch:
    @hookimpl
    def platform_on_epoch_start(self, run, epoch):
        if epoch == 1:
            raise Interrupted


@pytest.mark.slow
def test_student_distils_caches_once_and_resumes(tiny_config, teacher_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("bam",), epochs=2,
                          components={"bam": {"teachers": f"sst={teacher_dir}"}})
    pm = make_plugin_manager(enabled=config.plugins)
    pm.register(StopAtSecondEpoch(), name="stop")
    run = prepare(config, pm)
    with pytest.raises(Interrupted):
        train(run)
    run.close()
    bam = run.regularizers["bam"]
    cache = run.output_dir / "bam" / "sst-teacher.pt"
    assert bam.computed == ["sst"] and cache.is_file() and not (run.output_dir / "bam" / "sts-teacher.pt").exists()
    stamp = cache.stat().st_mtime_ns

    # The cache holds what the teacher predicts on the student's training examples.
    _, teacher, tokenizer = load_run(teacher_dir)
    data = run.train_data["sst"]
    with torch.inference_mode():
        fresh = teacher(make_batch(data, range(len(data)), tokenizer.pad))
    assert torch.allclose(bam.outputs["sst"], fresh, atol=1e-5)

    moved = Path(config.output_dir).with_name("moved")  # a run folder moved before its resume
    Path(config.output_dir).rename(moved)
    cache = moved / "bam" / "sst-teacher.pt"
    resumed = prepare(attrs.evolve(config, output_dir=str(moved)), resume=True)
    again = resumed.regularizers["bam"]
    assert again.caches["sst"] == {"teacher": str(teacher_dir / "best.pt"), "examples": 24}  # no path: the folder's
    best = train(resumed)
    assert again.computed == [] and cache.stat().st_mtime_ns == stamp, "a resumed run reuses the cached outputs"
    assert not Path(config.output_dir).exists(), "nothing is written where the run was before it moved"
    assert torch.equal(again.outputs["sst"], bam.outputs["sst"])
    assert {"sst", "sts", "mean"} <= set(best)

    events = EventAccumulator(str(moved / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"bam/sst/teacher_weight", "bam/sst/distill"} <= tags and not any(t.startswith("bam/sts") for t in tags)
    weights = [event.value for event in events.Scalars("bam/sst/teacher_weight")]
    assert weights[0] == 1.0 and weights == sorted(weights, reverse=True) and weights[-1] == pytest.approx(1 / 6)


def test_teacher_of_another_task_is_refused(tiny_config, tmp_path):
    sts_teacher = tmp_path / "sts-teacher"
    train(prepare(attrs.evolve(tiny_config, tasks=("sts",), epochs=1, output_dir=str(sts_teacher))))
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("bam",), epochs=1,
                          components={"bam": {"teachers": f"sst={sts_teacher}"}})
    with pytest.raises(BamError, match=f"teacher {sts_teacher} of task 'sst' was trained on sts, not on 'sst'"):
        train(prepare(config))


def test_missing_teacher_is_refused(tiny_config, tmp_path):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("bam",), epochs=1,
                          components={"bam": {"teachers": f"sst={tmp_path / 'nowhere'}"}})
    with pytest.raises(BamError, match="teacher of task 'sst': no run checkpoint at .*nowhere/best.pt"):
        train(prepare(config))


def test_teacher_with_another_max_length_tokenizes_for_itself(tiny_config, teacher_dir):
    config = attrs.evolve(tiny_config, tasks=("sst", "sts"), plugins=("bam",), max_length=12,
                          components={"bam": {"teachers": f"sst={teacher_dir}"}})
    run = prepare(config)
    rng = torch.get_rng_state()
    outputs = teacher_outputs("sst", str(teacher_dir), run)
    assert torch.equal(torch.get_rng_state(), rng), "building the teacher leaves the student's random stream alone"
    teacher_config, teacher, tokenizer = load_run(teacher_dir)
    assert teacher_config.max_length == 32 and max(run.train_data["sst"].lengths) <= 12
    data = load_data(teacher_config, teacher.tasks, tokenizer, "train")["sst"]
    with torch.inference_mode():
        fresh = teacher(make_batch(data, range(len(data)), tokenizer.pad))
    assert torch.allclose(outputs, fresh, atol=1e-5)
    run.close()
