"""The platform's public plugin API: everything a plugin, a task or a study imports from ``core``.

A plugin module imports from here and nowhere else in ``core``; the rest of ``core`` may change between
versions, this module's ``__all__`` changes only with notice. The built-in plugins (``plugins/``), the
built-in tasks (``tasks/``), the documentation's examples and the example packages are held to it by the
import contracts in ``pyproject.toml``. What a plugin author needs to know, on one screen:
``docs/writing-a-task-plugin.md``; every hook: ``docs/hooks.md``.

- **Provide components**: a registration hook (``platform_tasks``, ``platform_samplers``, …; marked
  ``hookimpl``) returns :class:`Component` s, one descriptor for every family: a name, the family's
  factory (:class:`TaskSpec`, :class:`TaskKind`, :class:`SamplerFactory`, :class:`RegularizerFactory`,
  :class:`TopologyFactory`, :class:`BalancerFactory`, :class:`ModelTransform`, :class:`MaskerFactory`, a
  :class:`SearchSpace`, a :class:`Command`), its settings class (fields made with :func:`field`; per-task settings
  with :func:`assignments`), its own search space, whether it is the family's default.
- **A task** is a :class:`TaskSpec`; a run binds it to a :class:`Task`. A new shape of task is a
  :class:`TaskKind`: labels, encoding with the :class:`Tokenizer`, collating a :class:`SplitData` into a
  :class:`Batch`, what the head sees (:class:`EncoderOutput`, :class:`Widths`), the head, the form of its
  output, the loss, predictions and metrics (:class:`Metric`).
- **React to a run**: the ``platform_on_…`` hooks receive the live :class:`Run` (:class:`TrainingRun` in
  ``platform run``); a :class:`Regularizer` and a :class:`Balancer` receive them too.
- **Declare hooks of your own** for other plugins with ``hookspec`` (``PLATFORM_HOOKSPECS``).
- **Errors**: raise :class:`PlatformError` (or :class:`ConfigError`, :class:`DataError`) for a user's
  mistake; the command line prints it as one line.
"""

from __future__ import annotations

from core.base.distributed import is_main, on_main
from core.base.errors import ConfigError, PlatformError
from core.base.files import load as load_state
from core.base.files import rng_state, set_rng_state
from core.base.files import save as save_state
from core.base.settings import assignments, field, is_positive, names, positive, positive_or_none
from core.build.trained import load_run
from core.data.batch import Batch
from core.data.folders import resolve_data_dir
from core.data.tables import DataError
from core.data.tokenizer import BERT_SPECIALS, ROBERTA_SPECIALS, SpecialTokens, Tokenizer
from core.encoder.architecture import Architecture, Encoder, EncoderOutput
from core.encoder.bert import BERT, INIT_STD, BertConfig, BertModel, extended_attention_mask
from core.encoder.bert import Encoder as BertLayers
from core.encoder.bert import Pooler as BertPooler
from core.model.multitask import MultitaskModel, perturbed_embeddings
from core.model.topology import TopologyFactory
from core.plugin.command import Command
from core.plugin.component import Component, SearchSpace
from core.plugin.hookspecs import hookimpl, hookspec
from core.plugin.invocation import Invocation
from core.pretrain.masking import Masker, MaskerFactory, budget
from core.experiment.config import RunConfig
from core.tasks.heads import CosineRegressor, PairClassifier, SentenceClassifier, TokenClassifier, Widths
from core.tasks.kind import TaskKind
from core.tasks.spec import Metric, TaskSpec
from core.tasks.splits import SplitData, load_split
from core.tasks.task import Task
from core.train.context import Run, TrainingRun
from core.train.evaluation import head_outputs
from core.train.balancer import Aggregation, Balancer, BalancerFactory, step_generator
from core.train.regularizer import Regularizer, RegularizerFactory
from core.train.sampling import (
    PlannedSampler,
    Sampler,
    SamplerFactory,
    Step,
    TaskBatch,
    TaskStream,
    generator,
    permutation,
)
from core.train.transform import ModelTransform

__all__ = [
    # components and hooks
    "Component", "hookimpl", "hookspec",
    # errors
    "PlatformError", "ConfigError", "DataError",
    # settings
    "field", "names", "positive", "positive_or_none", "is_positive", "assignments",
    # tasks and task kinds
    "TaskSpec", "Task", "TaskKind", "Metric", "Tokenizer", "SplitData", "Batch", "EncoderOutput", "Widths",
    "load_split", "resolve_data_dir",
    # encoder architectures (platform_encoders)
    "Architecture", "Encoder", "SpecialTokens", "BERT_SPECIALS", "ROBERTA_SPECIALS",
    # BERT, and its blocks other architectures build on (its Post-LN layers, its pooler)
    "BERT", "BertConfig", "BertModel", "BertLayers", "BertPooler", "extended_attention_mask", "INIT_STD",
    # heads the built-in kinds build
    "SentenceClassifier", "PairClassifier", "CosineRegressor", "TokenClassifier",
    # the factories of the component families, and what they build
    "SamplerFactory", "Sampler", "PlannedSampler", "TaskStream", "Step", "TaskBatch", "generator",
    "permutation", "RegularizerFactory", "Regularizer",
    "BalancerFactory", "Balancer", "Aggregation", "step_generator", "ModelTransform",
    "TopologyFactory", "MaskerFactory", "Masker", "budget", "SearchSpace", "Command", "Invocation",
    # the run a hook receives
    "Run", "TrainingRun", "RunConfig", "MultitaskModel", "perturbed_embeddings", "head_outputs", "load_run",
    # state files and processes
    "save_state", "load_state", "rng_state", "set_rng_state", "is_main", "on_main",
]
