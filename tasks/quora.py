"""Quora Question Pairs: are two questions paraphrases? One logit, binary cross-entropy."""

from core.api import Component, TaskSpec, hookimpl

QUORA = TaskSpec(
    name="quora",
    kind="pair-classification",
    files={"train": "quora-train.csv", "dev": "quora-dev.csv"},
    text_columns=("sentence1", "sentence2"),
    label_column="is_duplicate",
    num_labels=1,
    prediction_header="Predicted_Is_Paraphrase",
    description="Quora paraphrase detection, binary (one logit), accuracy",
)


@hookimpl
def platform_tasks() -> list[Component[TaskSpec]]:
    return [Component.of(QUORA, default=True)]  # one of the tasks `platform run` trains without --tasks
