"""Binary SST ("sst2"): a third-party task plugin for the multitask platform.

It reuses the SST files but keeps only clearly negative (0, 1) and clearly positive (3, 4)
sentences, as GLUE's SST-2 does; neutral rows (2) are outside the label space and skipped.
"""

from core.api import Component, TaskSpec, hookimpl

FOLD = {"0": 0, "1": 0, "3": 1, "4": 1}  # SST's five classes folded into two; neutral (2) is not in the map: skipped


SST2 = TaskSpec(
    name="sst2",
    kind="single-classification",
    files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    num_labels=2,
    label_map=FOLD,
    prediction_header="Predicted_Sentiment",
    description="SST folded to binary sentiment (neutral dropped), accuracy",
)


@hookimpl
def platform_tasks():
    return [Component.of(SST2)]
