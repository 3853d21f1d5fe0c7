"""CFIMDB: binary sentiment of (long) movie reviews."""

from core.hookspecs import hookimpl
from core.tasks import SINGLE_CLASSIFICATION, TaskSpec

CFIMDB = TaskSpec(
    name="cfimdb",
    kind=SINGLE_CLASSIFICATION,
    files={"train": "ids-cfimdb-train.csv", "dev": "ids-cfimdb-dev.csv", "test": "ids-cfimdb-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    num_labels=2,
    prediction_header="Predicted_Sentiment",
    description="CFIMDB sentiment, binary, accuracy",
)


@hookimpl
def platform_register_tasks(register):
    register(CFIMDB)
