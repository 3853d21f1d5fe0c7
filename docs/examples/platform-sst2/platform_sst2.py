"""Binary SST ("sst2"): a third-party task plugin for the multitask platform.

It reuses the SST files but keeps only clearly negative (0, 1) and clearly positive (3, 4)
sentences, as GLUE's SST-2 does; neutral rows (2) are outside the label space and skipped.
"""

import attrs

from core.hookspecs import hookimpl
from core.tasks import SINGLE_CLASSIFICATION, TaskSpec


@attrs.frozen
class BinarySentiment(TaskSpec):
    """SST's five classes folded into two; neutral sentences are dropped."""

    def parse_label(self, text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        if value in (0.0, 1.0):
            return 0
        if value in (3.0, 4.0):
            return 1
        return None  # neutral or out of range: the row is skipped and counted


SST2 = BinarySentiment(
    name="sst2",
    kind=SINGLE_CLASSIFICATION,
    files={"train": "ids-sst-train.csv", "dev": "ids-sst-dev.csv", "test": "ids-sst-test-student.csv"},
    text_columns=("sentence",),
    label_column="sentiment",
    num_labels=2,
    prediction_header="Predicted_Sentiment",
    description="SST folded to binary sentiment (neutral dropped), accuracy",
)


@hookimpl
def platform_register_tasks(register):
    register(SST2)
