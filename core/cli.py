"""The ``platform`` command: run, pretrain, study, evaluate, predict, encode, plugins.

Options of ``run``, and of the base configuration of ``study``, come from the fields of
:class:`core.config.RunConfig`; every registered sampler, regularizer and topology with settings adds
``--<name>-<setting>`` options; plugins may add more through ``platform_add_cli_options``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core import config as cfg
from core import pretraining
from core.errors import PlatformError
from core.plugins import Registries, is_opt_in, make_plugin_manager

COMPONENT_KINDS = ("samplers", "regularizers", "topologies")


def add_component_options(parser: argparse.ArgumentParser, registries: Registries,
                          kinds: tuple[str, ...] = COMPONENT_KINDS) -> None:
    for kind in kinds:
        for entry in getattr(registries, kind):
            if entry.config is not None:
                group = parser.add_argument_group(f"{entry.name} ({Registries.KINDS[kind]} from plugin {entry.plugin})", entry.help)
                cfg.add_options(group, entry.config, prefix=f"{entry.name}-")


def component_settings(args: argparse.Namespace, registries: Registries,
                       kinds: tuple[str, ...] = COMPONENT_KINDS) -> dict[str, dict]:
    settings = {}
    for kind in kinds:
        for entry in getattr(registries, kind):
            if entry.config is not None:
                given = cfg.options_given(args, entry.config, prefix=f"{entry.name}-")
                if given:
                    cfg.build(entry.config, given, source=f"--{entry.name}-* options")
                    settings[entry.name] = given
    return settings


def add_run_config_options(parser: argparse.ArgumentParser, registries: Registries, title: str = "",
                           description: str = "") -> None:
    """Every option of a :class:`RunConfig` (under ``title`` if given), and the settings of every
    registered component."""
    cfg.add_options(parser.add_argument_group(title, description) if title else parser, cfg.RunConfig)
    add_component_options(parser, registries)


def run_config_from(args: argparse.Namespace, registries: Registries, source: str = "platform run") -> cfg.RunConfig:
    values = cfg.options_given(args, cfg.RunConfig)
    values["components"] = component_settings(args, registries)
    return cfg.build(cfg.RunConfig, values, source=source)


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def command_run(args: argparse.Namespace, registries: Registries) -> int:
    from core import trainer

    if args.resume:
        run = trainer.prepare(cfg.RunConfig(output_dir=args.resume), resume=True)
    else:
        run = trainer.prepare(run_config_from(args, registries))
    print(f"run folder: {run.output_dir}", file=sys.stderr)
    best = trainer.train(run)
    print(format_metrics("best dev", best))
    return 0


def command_pretrain(args: argparse.Namespace, registries: Registries) -> int:
    if args.resume:
        run = pretraining.prepare(pretraining.PretrainConfig(output_dir=args.resume), resume=True)
    else:
        values = cfg.options_given(args, pretraining.PretrainConfig)
        values["components"] = component_settings(args, registries, kinds=("maskers",))
        run = pretraining.prepare(cfg.build(pretraining.PretrainConfig, values, source="platform pretrain"))
    print(f"run folder: {run.output_dir}", file=sys.stderr)
    metrics = pretraining.train(run)
    before, after = metrics["before"], metrics["after"]
    print(f"held-out MLM perplexity: {before['perplexity']:.3f} at step {before['step']}, "
          f"{after['perplexity']:.3f} at step {after['step']} (masked-token accuracy {before['accuracy']:.4f} -> "
          f"{after['accuracy']:.4f}); {metrics['train_seconds']:.0f} s of training")
    print(f"checkpoint: {run.output_dir} (platform run --checkpoint {run.output_dir})")
    return 0


def command_study(args: argparse.Namespace, registries: Registries) -> int:
    from studies.runner import StudySettings, run_study

    settings = cfg.build(StudySettings, cfg.options_given(args, StudySettings), source="platform study")
    run_study(run_config_from(args, registries, source="platform study"), settings)
    return 0


def command_dashboard(args: argparse.Namespace, registries: Registries) -> int:
    from studies.dashboard import serve

    serve(args.study, args.study_dir, args.storage, args.host, args.port)
    return 0


def command_evaluate(args: argparse.Namespace, registries: Registries) -> int:
    from core import inference

    metrics = inference.evaluate_checkpoint(args.checkpoint, file=args.file, task=args.task, data_dir=args.data_dir)
    print(format_metrics("dev" if not args.file else str(args.file), metrics))
    return 0


def command_predict(args: argparse.Namespace, registries: Registries) -> int:
    from core import inference

    for path in inference.predict_checkpoint(args.checkpoint, out=args.out, data_dir=args.data_dir):
        print(path)
    return 0


def command_encode(args: argparse.Namespace, registries: Registries) -> int:
    from core import encode

    pearson = encode.zero_shot_similarity(args.checkpoint, task=args.task, split=args.split, pooling=args.pooling,
                                          data_dir=args.data_dir, batch_size=args.batch_size, limit=args.limit)
    print(f"{args.checkpoint} zero-shot cosine Pearson on {args.task} {args.split} ({args.pooling} pooling): {pearson:.4f}")
    return 0


def command_plugins(args: argparse.Namespace, registries: Registries) -> int:
    pm = make_plugin_manager(enabled=None)
    registries = Registries(pm)
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        status = "opt-in (--plugins " + name + ")" if is_opt_in(plugin) else "always on"
        print(f"{name}  [{status}]  {getattr(plugin, '__name__', type(plugin).__name__)}")
        for kind in Registries.KINDS:
            for entry in getattr(registries, kind):
                if entry.plugin == name:
                    print(f"    {Registries.KINDS[kind]} {entry.name}: {entry.help}")
        print(f"    hooks: {', '.join(hooks)}")
    return 0


def format_metrics(title: str, metrics: dict) -> str:
    parts = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
    return f"{title}: " + ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------


def build_parser(pm=None) -> tuple[argparse.ArgumentParser, Registries]:
    """The parser of every command; options come from the plugins of ``pm`` (default: all installed)."""
    pm = pm or make_plugin_manager(enabled=None)
    registries = Registries(pm)
    parser = argparse.ArgumentParser(prog="platform", description="Multitask fine-tuning of BERT-style encoders.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="train a (multitask) model and evaluate it on dev every epoch")
    add_run_config_options(run, registries)
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")

    study = commands.add_parser(
        "study", help="an Optuna hyperparameter study: trials of `platform run` with settings from the search spaces",
        description="Run (or continue) the Optuna study NAME: each trial trains like `platform run` with the base "
                    "configuration below plus the settings the active search spaces suggest, in "
                    "<study-dir>/NAME/trial-<number>. See docs/studies.md.")
    study.add_argument("name", metavar="NAME", help="the study's name: its folder is <study-dir>/NAME; running the "
                                                    "same NAME again continues the study")
    options = study.add_argument_group("study")
    options.add_argument("--trials", type=int, metavar="N", default=argparse.SUPPRESS,
                         help="trials to run now, added to those the study has (default: 10; no limit with --timeout)")
    options.add_argument("--timeout", type=float, metavar="MIN", default=argparse.SUPPRESS,
                         help="start no new trial after MIN minutes")
    options.add_argument("--storage", metavar="URL", default=argparse.SUPPRESS,
                         help="an Optuna RDB storage URL, e.g. postgresql://user@host/db "
                              "(default: sqlite:///<study-dir>/NAME/study.db)")
    options.add_argument("--space-file", metavar="FILE", default=argparse.SUPPRESS,
                         help="a TOML file whose [params.NAME] tables narrow (low, high, log, step; choices) or fix "
                              "(value) parameters of the search space, e.g. studies/interleaved_ratios.toml")
    options.add_argument("--show-space", action="store_true", default=argparse.SUPPRESS,
                         help="print the effective search space (parameter, distribution, range or choices, the "
                              "plugin that contributes it) and exit without training")
    options.add_argument("--enqueue", metavar="NAME=VALUE,...", action="append", default=argparse.SUPPRESS,
                         help="a trial to run first with these parameter values (the rest suggested as usual), e.g. "
                              "the defaults as a baseline: --enqueue smart_weight=5,ratio_sst=32; repeatable; "
                              "skipped when the study already has a trial with the same values")
    options.add_argument("--objective", metavar="SPEC", default=argparse.SUPPRESS,
                         help="mean: the mean dev score; weighted:sst=1,sts=2: a weighted mean of task scores; "
                              "pareto: one objective per task (multi-objective, no pruning); all maximized "
                              "(default: mean)")
    options.add_argument("--pruner", choices=("median", "hyperband", "none"), default=argparse.SUPPRESS,
                         help="stop unpromising trials after an epoch: median (below the median of earlier trials, "
                              "after 5 trials, from the second epoch), hyperband, or none (default: median)")
    options.add_argument("--heartbeat", type=int, metavar="SECONDS", default=argparse.SUPPRESS,
                         help="seconds between the heartbeats of a running trial; a RUNNING trial silent for twice as "
                              "long belongs to a worker that died and is marked failed (default: 60)")
    options.add_argument("--study-dir", metavar="DIR", default=argparse.SUPPRESS,
                         help="folder of the studies (default: runs/studies)")
    add_run_config_options(study, registries, "base configuration",
                           "every `platform run` option; the search spaces override what they suggest")

    pretrain = commands.add_parser(
        "pretrain", help="further pretraining: the masked-language-model objective on task text and text files",
        description="Continue the masked-language-model objective of --checkpoint on the train text of tasks and/or "
                    "text files; the run folder becomes a checkpoint (platform run --checkpoint FOLDER).")
    cfg.add_options(pretrain, pretraining.PretrainConfig)
    add_component_options(pretrain, registries, kinds=("maskers",))
    pretrain.add_argument("--resume", metavar="RUN_DIR", help="continue the pretraining run in RUN_DIR")

    dashboard = commands.add_parser("dashboard", help="serve optuna-dashboard for a study on localhost")
    dashboard.add_argument("study", nargs="?", metavar="STUDY", help="a study under --study-dir (or use --storage)")
    dashboard.add_argument("--study-dir", default="runs/studies", help="folder of the studies (default: runs/studies)")
    dashboard.add_argument("--storage", metavar="URL", help="an Optuna storage URL instead of a study's SQLite file")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")

    evaluate = commands.add_parser("evaluate", help="dev metrics of a trained run (or of any file of the same format)")
    evaluate.add_argument("checkpoint", type=Path, help="a run folder or its best.pt")
    evaluate.add_argument("--file", type=Path, help="a labelled file in the task's format (default: the dev files)")
    evaluate.add_argument("--task", help="the task of --file (needed when the run has several)")
    evaluate.add_argument("--data-dir", help="folder of the task files")

    predict = commands.add_parser("predict", help="write dev and test predictions of a trained run")
    predict.add_argument("checkpoint", type=Path, help="a run folder or its best.pt")
    predict.add_argument("--out", type=Path, help="folder for the prediction files (default: RUN/predictions)")
    predict.add_argument("--data-dir", help="folder of the task files")

    encode = commands.add_parser("encode", help="zero-shot cosine similarity of a pretrained encoder on a pair task")
    encode.add_argument("--checkpoint", default="minilm-l6", help="pretrained encoder (default: minilm-l6)")
    encode.add_argument("--task", default="sts", help="a pair-regression task (default: sts)")
    encode.add_argument("--split", default="dev", help="split (default: dev)")
    encode.add_argument("--pooling", default="mean", choices=("cls", "mean"), help="pooling (default: mean)")
    encode.add_argument("--batch-size", type=int, default=128, help="sentences per forward (default: 128)")
    encode.add_argument("--limit", type=int, default=None, help="at most N pairs")
    encode.add_argument("--data-dir", help="folder of the task files")

    commands.add_parser("plugins", help="list every plugin, what it registers, and its hooks")

    for name, sub in commands.choices.items():
        pm.hook.platform_add_cli_options(command=name, parser=sub)
    return parser, registries


COMMANDS = {"run": command_run, "pretrain": command_pretrain, "study": command_study, "dashboard": command_dashboard,
            "evaluate": command_evaluate, "predict": command_predict, "encode": command_encode,
            "plugins": command_plugins}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser, registries = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args, registries)
    except PlatformError as error:  # bad input, named; anything else is a bug and keeps its traceback
        print(f"platform {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ("run the same command again to continue the study" if args.command == "study"
                else "resume with --resume RUN_DIR")
        print(f"interrupted; everything written so far is kept ({hint})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
