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
from core.encoder.bert import BERT
from core.encoder.mlm import load_masked_lm
from core.pretrain.config import RUN_CONFIG, PretrainConfig, finalize
from core.pretrain.corpus import load_corpus
from core.pretrain.loop import PretrainingRun, load_state, restore
from core.pretrain.masking import Masker, ReplacementRule, Vocabulary
from core.experiment.folder import RunFolder, folder_of
from core.train.optim import AdamW, parameter_groups, warmup_linear_decay


def check_resumable(folder: Path) -> None:
    """``--resume`` needs a pretraining run's folder."""
    if not (folder / RUN_CONFIG).is_file():
        hint = (f"; it holds a training run: continue it with `platform run --resume {folder}`"
                if (folder / "config.json").is_file() else "")
        raise ConfigError(f"--resume: {folder} holds no pretraining run ({RUN_CONFIG} missing){hint}")


def prepare(config: PretrainConfig, pm: pluggy.PluginManager | None = None, *,
            resume: bool = False) -> PretrainingRun:
    """Build a run from ``config``; with ``resume``, the run in ``config.output_dir``, from its ``last.pt``.
    Every name and setting is checked before the folder is claimed (a new run) or locked (a resumed one);
    the folder stays locked until the run is closed."""
    if resume:
        if config.output_dir is None:
            raise ConfigError("--resume needs the run folder")
        check_resumable(Path(config.output_dir))
        # the folder as named now, wherever the run was started (folders get moved)
        config = attrs.evolve(PretrainConfig.load(Path(config.output_dir) / RUN_CONFIG), output_dir=config.output_dir)
    parts = Parts(config.plugins, config.checkpoint, config.components, pm)
    registries = parts.registries
    masker_component = (lookup(registries.maskers, config.masker, "--masker") if config.masker
                        else default_of(registries.maskers))
    for name, settings in config.components.items():
        if settings and name != masker_component.name:
            raise ConfigError(not_active(config, name, list(settings), registries, {"maskers": masker_component.name}))
    masker = masker_component.factory(parts.settings(masker_component))
    rule = build(ReplacementRule, {"rate": config.mask_rate, "mask": config.mask_token,
                                   "random": config.random_token}, source="--mask-rate/--mask-token/--random-token")
    source = parts.source
    if source.architecture is not BERT:
        raise ConfigError(f"--checkpoint {config.checkpoint}: `platform pretrain` further-pretrains BERT checkpoints "
                          f"only (its masked-language head is BERT's); this one is {source.model_type}")
    if config.max_length > source.config.max_position_embeddings:
        raise ConfigError(f"--max-length {config.max_length} exceeds the checkpoint's max_position_embeddings "
                          f"{source.config.max_position_embeddings}")
    config = finalize(attrs.evolve(config, masker=masker_component.name))
    folder = RunFolder(folder_of(config))
    if resume:
        folder.take_for_resume()
    else:
        folder.claim(config_file=RUN_CONFIG, overwritable=False)
    try:
        run = _build(config, parts, folder, masker, rule)
    except BaseException:
        folder.close()
        raise
    if resume and (folder / "last.pt").exists():
        restore(run, load_state(folder / "last.pt"))
    return run


def _build(config: PretrainConfig, parts: Parts, folder: RunFolder, masker: Masker,
           rule: ReplacementRule) -> PretrainingRun:
    if config.threads:
        torch.set_num_threads(config.threads)
    registries = parts.registries
    tokenizer = parts.tokenizer
    tasks = {component.name: registries.bind(component.factory) for component in registries.tasks}
    data_dir = resolve_data_dir(config.data_dir) if any(t in tasks for t in config.text) else None
    corpus = load_corpus(config.text, tasks, data_dir, tokenizer, config.max_length, config.heldout_every,
                         config.limit)
    torch.manual_seed(config.seed)
    model, from_checkpoint = load_masked_lm(parts.source, dropout=config.dropout, seed=config.seed)
    model = model.to(resolve_device(config.device))
    model.precision = config.precision
    if config.head_only:
        model.bert.requires_grad_(False)
    optimizer = AdamW(parameter_groups(model, config.lr, 1.0, config.weight_decay), lr=config.lr,
                      weight_decay=config.weight_decay)
    warmup_steps = int(config.warmup * config.steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 1.0 if config.warmup == 0 else warmup_linear_decay(step, warmup_steps, config.steps))
    run = PretrainingRun(config=config, pm=parts.pm, folder=folder, model=model, optimizer=optimizer,
                         scheduler=scheduler, tokenizer=tokenizer, vocab=Vocabulary.of(tokenizer), masker=masker,
                         rule=rule, corpus=corpus, source=parts.source, head_from_checkpoint=from_checkpoint)
    folder.write(RUN_CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")
    return run
