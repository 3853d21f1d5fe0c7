"""Stanford Sentiment Treebank: five-way sentence sentiment (0 very negative … 4 very positive)."""

from core.api import Component, TaskSpec, hookimpl

SST = TaskSpec(
    name="sst",
    kind="single-classification",
    files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    num_labels=5,
    prediction_header="Predicted_Sentiment",
    description="SST sentiment, 5 classes, accuracy",
)


@hookimpl
def platform_tasks() -> list[Component[TaskSpec]]:
    return [Component.of(SST, default=True)]  # one of the tasks `platform run` trains without --tasks
