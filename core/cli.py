"""The ``platform`` command: run, evaluate, predict, encode, plugins.

Options of ``run`` come from the fields of :class:`core.config.RunConfig`; every registered sampler,
regularizer and topology with settings adds ``--<name>-<setting>`` options; plugins may add more
through ``platform_add_cli_options``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import attrs

from core import config as cfg
from core.plugins import Registries, is_opt_in, make_plugin_manager

log = logging.getLogger("platform")

COMPONENT_KINDS = ("samplers", "regularizers", "topologies")


def add_component_options(parser: argparse.ArgumentParser, registries: Registries) -> None:
    for kind in COMPONENT_KINDS:
        for entry in getattr(registries, kind):
            if entry.config is not None:
                group = parser.add_argument_group(f"{entry.name} ({kind[:-1]} from plugin {entry.plugin})", entry.help)
                cfg.add_options(group, entry.config, prefix=f"{entry.name}-")


def component_settings(args: argparse.Namespace, registries: Registries) -> dict[str, dict]:
    settings = {}
    for kind in COMPONENT_KINDS:
        for entry in getattr(registries, kind):
            if entry.config is not None:
                given = cfg.options_given(args, entry.config, prefix=f"{entry.name}-")
                if given:
                    cfg.build(entry.config, given, source=f"--{entry.name}-* options")
                    settings[entry.name] = given
    return settings


def run_config_from(args: argparse.Namespace, registries: Registries) -> cfg.RunConfig:
    values = cfg.options_given(args, cfg.RunConfig)
    values["components"] = component_settings(args, registries)
    return cfg.build(cfg.RunConfig, values, source="platform run")


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
    cfg.add_options(run, cfg.RunConfig)
    run.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR where it stopped")
    add_component_options(run, registries)

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


COMMANDS = {"run": command_run, "evaluate": command_evaluate, "predict": command_predict,
            "encode": command_encode, "plugins": command_plugins}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser, registries = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args, registries)
    except (ValueError, FileNotFoundError) as error:  # our errors name the culprit; no traceback needed
        print(f"platform {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything written so far is kept (resume with --resume RUN_DIR)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
