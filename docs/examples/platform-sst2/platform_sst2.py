"""Binary SST ("sst2"): a third-party task plugin for the multitask platform.

It reuses the SST files but keeps only clearly negative (0, 1) and clearly positive (3, 4)
sentences, as GLUE's SST-2 does; neutral rows (2) are outside the label space and skipped.
"""

from core.api import TaskSpec, hookimpl


def fold(text):
    """SST's five classes folded into two: 0 (from 0, 1) or 1 (from 3, 4); None skips the row."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return {0.0: 0, 1.0: 0, 3.0: 1, 4.0: 1}.get(value)  # neutral (2) or out of range: skipped and counted


SST2 = TaskSpec(
    name="sst2",
    kind="single-classification",
    files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    num_labels=2,
    label_parser=fold,
    prediction_header="Predicted_Sentiment",
    description="SST folded to binary sentiment (neutral dropped), accuracy",
)


@hookimpl
def platform_register_tasks(register):
    register(SST2)
