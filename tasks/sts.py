"""SemEval STS benchmark: semantic similarity of two sentences on a 0-5 scale."""

from core.api import Component, TaskSpec, hookimpl

STS = TaskSpec(
    name="sts",
    kind="pair-regression",
    files={"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test-student.csv"},
    text_columns=("sentence1", "sentence2"),
    label_column="similarity",
    label_range=(0.0, 5.0),
    prediction_header="Predicted_Similiarity",  # sic: the release's spelling, which its grader reads
    description="STS similarity, 0-5 regression, Pearson correlation",
)


@hookimpl
def platform_tasks() -> list[Component[TaskSpec]]:
    return [Component.of(STS, default=True)]  # one of the tasks `platform run` trains without --tasks
