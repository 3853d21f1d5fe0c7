"""Building a further-pretraining run (``platform pretrain``) from its configuration: the masker, the
corpus, the masked-language model, the optimizer; with ``resume``, restored from ``last.pt``."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pluggy
import torch

from core.base.devices import resolve_device
from core.base.errors import ConfigError
from core.base.settings import build
from core.build.parts import Parts, default_of, lookup, not_active
from core.data.folders import resolve_data_dir
from core.encoder.mlm import load_masked_lm
from core.pretrain.config import RUN_CONFIG, PretrainConfig, finalize
from core.pretrain.corpus import load_corpus
from core.pretrain.loop import PretrainRun, load_state, restore
from core.pretrain.masking import ReplacementRule, Vocabulary
from core.train.optim import AdamW, parameter_groups, warmup_linear_decay


def check_output_dir(output_dir: Path, resume: bool) -> None:
    """A new run needs a missing or empty folder; ``--resume`` needs a pretraining run's folder."""
    if resume:
        if not (output_dir / RUN_CONFIG).is_file():
            raise ConfigError(f"--resume: {output_dir} holds no pretraining run ({RUN_CONFIG} missing)")
        return
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        own = (output_dir / RUN_CONFIG).is_file()
        hint = "pass --resume to continue it" if own else "it is not a pretraining run's"
        raise ConfigError(f"--output-dir {output_dir} exists and is not empty ({hint}); choose a new folder "
                          "(nothing was overwritten)")


def prepare(config: PretrainConfig, pm: pluggy.PluginManager | None = None, *, resume: bool = False) -> PretrainRun:
    """Build a run from ``config``; with ``resume``, the run in ``config.output_dir``, from its ``last.pt``."""
    if config.output_dir is None and resume:
        raise ConfigError("--resume needs the run folder")
    if resume:
        check_output_dir(Path(config.output_dir), resume=True)
        # the folder as named now, wherever the run was started (folders get moved)
        config = attrs.evolve(PretrainConfig.load(Path(config.output_dir) / RUN_CONFIG), output_dir=config.output_dir)
    config = finalize(config)
    output_dir = Path(config.output_dir)
    if not resume:
        check_output_dir(output_dir, resume=False)
    if config.threads:
        torch.set_num_threads(config.threads)
    parts = Parts(config.plugins, config.checkpoint, config.components, pm)
    registries = parts.registries
    masker_component = (lookup(registries.maskers, config.masker, "--masker") if config.masker
                        else default_of(registries.maskers))
    for name, settings in config.components.items():
        if settings and name != masker_component.name:
            raise ConfigError(not_active(config, name, list(settings), registries, "", "", masker_component.name))
    masker = masker_component.factory(parts.settings(masker_component))
    config = attrs.evolve(config, masker=masker_component.name)
    rule = build(ReplacementRule, {"rate": config.mask_rate, "mask": config.mask_token,
                                   "random": config.random_token}, source="--mask-rate/--mask-token/--random-token")
    source = parts.source
    if config.max_length > source.config.max_position_embeddings:
        raise ConfigError(f"--max-length {config.max_length} exceeds the checkpoint's max_position_embeddings "
                          f"{source.config.max_position_embeddings}")
    tokenizer = parts.tokenizer
    tasks = {component.name: registries.bind(component.factory) for component in registries.tasks}
    data_dir = resolve_data_dir(config.data_dir) if any(t in tasks for t in config.text) else None
    corpus = load_corpus(config.text, tasks, data_dir, tokenizer, config.max_length, config.heldout_every,
                         config.limit)
    torch.manual_seed(config.seed)
    model, from_checkpoint = load_masked_lm(source, dropout=config.dropout, seed=config.seed)
    model = model.to(resolve_device(config.device))
    model.precision = config.precision
    if config.head_only:
        model.bert.requires_grad_(False)
    optimizer = AdamW(parameter_groups(model, config.lr, 1.0, config.weight_decay), lr=config.lr,
                      weight_decay=config.weight_decay)
    warmup_steps = int(config.warmup * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if config.warmup == 0 else warmup_linear_decay(step, warmup_steps, config.steps))
    run = PretrainRun(config, output_dir, model, tokenizer, Vocabulary.of(tokenizer), masker, rule, corpus, source,
                      optimizer, scheduler, from_checkpoint)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_CONFIG).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    if resume and (output_dir / "last.pt").exists():
        restore(run, load_state(output_dir / "last.pt"))
    return run
