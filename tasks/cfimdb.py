"""CFIMDB: binary sentiment of (long) movie reviews."""

from core.api import Component, TaskSpec, hookimpl

CFIMDB = TaskSpec(
    name="cfimdb",
    kind="single-classification",
    files={"train": "ids-cfimdb-train.csv", "dev": "ids-cfimdb-dev.csv", "test": "ids-cfimdb-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    num_labels=2,
    prediction_header="Predicted_Sentiment",
    description="CFIMDB sentiment, binary, accuracy",
)


@hookimpl
def platform_tasks() -> list[Component[TaskSpec]]:
    return [Component.of(CFIMDB)]
