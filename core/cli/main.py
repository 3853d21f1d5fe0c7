"""The ``platform`` command: run, pretrain, study, evaluate, predict, encode, plugins.

Options of ``run``, and of the base configuration of ``study``, come from the fields of
:class:`core.config.RunConfig`; every registered sampler, regularizer and topology with settings adds
``--<name>-<setting>`` options (a plugin's settings are its components' attrs classes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core.base import distributed
from core.base.errors import ConfigError, PlatformError
from core.base.files import check_folder
from core.base.settings import build, names, parse_assignments
from core.cli.options import add_options, options_given
from core.plugin.manager import Registries, is_opt_in, make_plugin_manager
from core.pretrain.config import PretrainConfig
from core.runs.config import RunConfig
from core.runs.folder import saved_config
from studies.settings import StudySettings

COMPONENTS = ("samplers", "regularizers", "topologies")  # the registries whose entries have settings


def add_component_options(parser: argparse.ArgumentParser, registries: Registries,
                          sorts: tuple[str, ...] = COMPONENTS) -> None:
    for sort in sorts:
        for entry in getattr(registries, sort):
            if entry.config is not None:
                group = parser.add_argument_group(f"{entry.name} ({Registries.SORTS[sort][0]} from plugin {entry.plugin})",
                                                  entry.help)
                add_options(group, entry.config, prefix=f"{entry.name}-")


def component_settings(args: argparse.Namespace, registries: Registries,
                       sorts: tuple[str, ...] = COMPONENTS) -> dict[str, dict]:
    settings = {}
    for sort in sorts:
        for entry in getattr(registries, sort):
            if entry.config is not None:
                given = options_given(args, entry.config, prefix=f"{entry.name}-")
                if given:
                    build(entry.config, given, prefix=f"{entry.name}-")
                    settings[entry.name] = given
    return settings


def add_run_config_options(parser: argparse.ArgumentParser, registries: Registries, title: str = "",
                           description: str = "") -> None:
    """Every option of a :class:`RunConfig` (under ``title`` if given), and the settings of every
    registered component."""
    add_options(parser.add_argument_group(title, description) if title else parser, RunConfig)
    add_component_options(parser, registries)


def run_config_from(args: argparse.Namespace, registries: Registries) -> RunConfig:
    values = options_given(args, RunConfig)
    values["components"] = component_settings(args, registries)
    return build(RunConfig, values)


def resume_config_from(args: argparse.Namespace, registries: Registries) -> RunConfig:
    """The saved configuration of the run in ``--resume RUN_DIR`` with the options given beside it laid
    over; ``core.build.run.prepare`` refuses those that would change the run, by name."""
    folder = Path(args.resume)
    values = options_given(args, RunConfig)
    if values.pop("output_dir", args.resume) != args.resume:
        raise ConfigError(f"--resume {args.resume} and --output-dir {args.output_dir} name two folders: give --resume only")
    saved = saved_config(folder)
    components = {name: dict(settings) for name, settings in saved.components.items()}
    for name, settings in component_settings(args, registries).items():
        components.setdefault(name, {}).update(settings)
    return build(RunConfig, {**saved.to_dict(), **values, "components": components, "output_dir": str(folder)},
                     source=f"--resume {folder}")


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def command_run(args: argparse.Namespace, registries: Registries) -> int:
    from core.build.run import prepare
    from core.train.loop import train

    if args.resume:
        if args.overwrite:
            raise ConfigError("--resume continues a run and --overwrite starts one again: give one of them")
        check_folder(args.resume, "--resume", "pass the run folder")
        run = prepare(resume_config_from(args, registries), resume=True)
    else:
        run = prepare(run_config_from(args, registries), overwrite=args.overwrite)
    if distributed.is_main():
        print(f"run folder: {run.output_dir}", file=sys.stderr)
    best = train(run)
    if distributed.is_main():
        print(format_metrics(f"best {run.selection_split}", best))
        if run.dev:
            print(format_metrics(f"dev of the model chosen on {run.selection_split}", run.dev))
    return 0


def command_pretrain(args: argparse.Namespace, registries: Registries) -> int:
    from core.build.pretrain import prepare as prepare_pretraining
    from core.pretrain.loop import train as pretrain_loop

    if args.resume:
        given = [*options_given(args, PretrainConfig)]
        given += [f"{masker}_{setting}" for masker, settings in component_settings(args, registries, ("maskers",)).items()
                  for setting in settings]
        if given:
            options = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ConfigError(f"--resume {args.resume} continues the pretraining run with the configuration it was "
                              f"started with; {options} would change it: drop them, or start a new run")
        run = prepare_pretraining(PretrainConfig(output_dir=args.resume), resume=True)
    else:
        values = options_given(args, PretrainConfig)
        values["components"] = component_settings(args, registries, sorts=("maskers",))
        run = prepare_pretraining(build(PretrainConfig, values, source="platform pretrain"))
    print(f"run folder: {run.output_dir}", file=sys.stderr)
    metrics = pretrain_loop(run)
    before, after = metrics["before"], metrics["after"]
    print(f"held-out MLM perplexity: {before['perplexity']:.3f} at step {before['step']}, "
          f"{after['perplexity']:.3f} at step {after['step']} (masked-token accuracy {before['accuracy']:.4f} -> "
          f"{after['accuracy']:.4f}); {metrics['train_seconds']:.0f} s of training")
    print(f"checkpoint: {run.output_dir} (platform run --checkpoint {run.output_dir})")
    return 0


def command_study(args: argparse.Namespace, registries: Registries) -> int:
    from studies.runner import run_study

    study_settings = build(StudySettings, options_given(args, StudySettings))
    run_study(run_config_from(args, registries), study_settings)
    return 0


def command_dashboard(args: argparse.Namespace, registries: Registries) -> int:
    from studies.dashboard import serve

    serve(args.study, args.study_dir, args.storage, args.host, args.port)
    return 0


def command_evaluate(args: argparse.Namespace, registries: Registries) -> int:
    from core.build import trained as inference

    metrics = inference.evaluate_checkpoint(args.checkpoint, file=args.file, task=args.task, data_dir=args.data_dir,
                                            split=args.split)
    title = args.split if not args.file else str(args.file)
    print(format_metrics(title if len(args.checkpoint) == 1 else f"{title} (ensemble of {len(args.checkpoint)} runs)",
                         metrics))
    return 0


def command_predict(args: argparse.Namespace, registries: Registries) -> int:
    from core.build import trained as inference

    for path in inference.predict_checkpoint(args.checkpoint, out=args.out, data_dir=args.data_dir):
        print(path)
    return 0


def command_encode(args: argparse.Namespace, registries: Registries) -> int:
    from core.build import encode as zero_shot

    pearson = zero_shot.zero_shot_similarity(args.checkpoint, task=args.task, split=args.split, pooling=args.pooling,
                                          data_dir=args.data_dir, batch_size=args.batch_size, limit=args.limit)
    print(f"{args.checkpoint} zero-shot cosine Pearson on {args.task} {args.split} ({args.pooling} pooling): {pearson:.4f}")
    return 0


def command_report(args: argparse.Namespace, registries: Registries) -> int:
    from core.report import plots
    from core.report import summary as report

    folders = [Path(path) for path in args.inputs if Path(path).is_dir()]
    if (args.command_line or args.name) and len(folders) != 1:
        raise ConfigError("--command and --name describe one run: give one run folder with them")
    if args.curves and not args.plot:
        raise ConfigError("--curves NAME draws into the --plot folder: give --plot DIR too")
    rows = []
    for path in map(Path, args.inputs):
        if path.is_dir():
            row = report.summarize(path, name=args.name, label=args.label, command=args.command_line, note=args.note)
            if args.json_dir:
                print(report.write(row, args.json_dir))
            rows.append(row)
        else:
            rows.extend(report.load_rows([path]))
    if args.table:
        print(report.markdown_table(rows, list(names(args.tasks)) if args.tasks else None))
    if args.plot:
        targets = parse_targets(args.targets or "")
        tasks = list(names(args.tasks)) if args.tasks else None
        print(plots.save(plots.scores_figure(rows, tasks, targets), args.plot / "scores.png"))
        if args.curves:
            chosen = [row for row in rows if row["name"] == args.curves]
            if not chosen:
                raise ConfigError(f"--curves {args.curves}: no such row; the rows are "
                                  f"{', '.join(row['name'] for row in rows)}")
            print(plots.save(plots.curves_figure(chosen[0]), args.plot / f"curves-{args.curves}.png"))
    return 0


def parse_targets(text: str) -> dict[str, float]:
    expected = "TASK=SCORE, e.g. sst=0.53,sts=0.88"
    targets = {}
    for task, value in parse_assignments(text, "--targets", expected).items():
        try:
            targets[task] = float(value)
        except ValueError:
            raise ConfigError(f"--targets: bad entry {task}={value}; expected {expected}") from None
    return targets


def command_plugins(args: argparse.Namespace, registries: Registries) -> int:
    pm = make_plugin_manager(enabled=None)
    registries = Registries(pm)
    for name, plugin in pm.list_name_plugin():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        status = "opt-in (--plugins " + name + ")" if is_opt_in(plugin) else "always on"
        print(f"{name}  [{status}]  {getattr(plugin, '__name__', type(plugin).__name__)}")
        for sort, (what, _, _) in Registries.SORTS.items():
            for entry in getattr(registries, sort):
                if entry.plugin == name:
                    print(f"    {what} {entry.name}: {entry.help}")
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
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR where it stopped, with the configuration it was started with "
                          "(only --threads, --data-dir, --save-every and --log-every may be given beside it)")
    run.add_argument("--overwrite", action="store_true",
                     help="start again from scratch in an --output-dir that holds an earlier run, clearing it (a "
                          "folder holding anything but a run is never written into)")

    study = commands.add_parser(
        "study", help="an Optuna hyperparameter study: trials of `platform run` with settings from the search spaces",
        description="Run (or continue) the Optuna study NAME: each trial trains like `platform run` with the base "
                    "configuration below plus the settings the active search spaces suggest, in "
                    "<study-dir>/NAME/trial-<number>. See docs/studies.md.")
    add_options(study.add_argument_group("study"), StudySettings)
    add_run_config_options(study, registries, "base configuration",
                           "every `platform run` option; the search spaces override what they suggest")

    pretrain = commands.add_parser(
        "pretrain", help="further pretraining: the masked-language-model objective on task text and text files",
        description="Continue the masked-language-model objective of --checkpoint on the train text of tasks and/or "
                    "text files; the run folder becomes a checkpoint (platform run --checkpoint FOLDER).")
    add_options(pretrain, PretrainConfig)
    add_component_options(pretrain, registries, sorts=("maskers",))
    pretrain.add_argument("--resume", metavar="RUN_DIR", help="continue the pretraining run in RUN_DIR")

    dashboard = commands.add_parser("dashboard", help="serve optuna-dashboard for a study on localhost")
    dashboard.add_argument("study", nargs="?", metavar="STUDY", help="a study under --study-dir (or use --storage)")
    dashboard.add_argument("--study-dir", default="runs/studies", help="folder of the studies (default: runs/studies)")
    dashboard.add_argument("--storage", metavar="URL", help="an Optuna storage URL instead of a study's SQLite file")
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")

    evaluate = commands.add_parser("evaluate", help="dev metrics of a trained run (or of any file of the same format); "
                                                    "of several runs' mean outputs (an ensemble)")
    evaluate.add_argument("checkpoint", type=Path, nargs="+", metavar="RUN",
                          help="a run folder or its best.pt; several: an ensemble, their head outputs averaged")
    evaluate.add_argument("--file", type=Path, help="a labelled file in the task's format (default: the dev files)")
    evaluate.add_argument("--task", help="the task of --file (needed when the run has several)")
    evaluate.add_argument("--split", choices=("dev", "validation"), default="dev",
                          help="dev, or validation: the rows the run held out of its train files with "
                               "--validation-split (default: dev)")
    evaluate.add_argument("--data-dir", help="folder of the task files")

    predict = commands.add_parser("predict", help="write dev and test predictions of a trained run (or an ensemble)")
    predict.add_argument("checkpoint", type=Path, nargs="+", metavar="RUN",
                         help="a run folder or its best.pt; several: an ensemble, their head outputs averaged")
    predict.add_argument("--out", type=Path, help="folder for the prediction files (default: RUN/predictions; needed "
                                                  "with several runs)")
    predict.add_argument("--data-dir", help="folder of the task files")

    encode = commands.add_parser("encode", help="zero-shot cosine similarity of a pretrained encoder on a pair task")
    encode.add_argument("--checkpoint", default="minilm-l6", help="pretrained encoder (default: minilm-l6)")
    encode.add_argument("--task", default="sts", help="a pair-regression task (default: sts)")
    encode.add_argument("--split", default="dev", help="split (default: dev)")
    encode.add_argument("--pooling", default="mean", choices=("cls", "mean"), help="pooling (default: mean)")
    encode.add_argument("--batch-size", type=int, default=128, help="sentences per forward (default: 128)")
    encode.add_argument("--limit", type=int, default=None, help="at most N pairs")
    encode.add_argument("--data-dir", help="folder of the task files")

    report = commands.add_parser(
        "report", help="sum runs up as small result files (JSON) and plot scores and learning curves",
        description="Read run folders and result files (earlier --json-dir output); write a result file per run "
                    "folder (--json-dir) and plots (--plot): DIR/scores.png, dev scores per configuration, and "
                    "DIR/curves-NAME.png, the learning curves of one row (--curves NAME).")
    report.add_argument("inputs", nargs="+", metavar="RUN_OR_JSON", help="run folders and result files")
    report.add_argument("--json-dir", type=Path, metavar="DIR", help="write DIR/NAME.json for every run folder given")
    report.add_argument("--name", help="the row's name (default: the run folder's name; one run folder only)")
    report.add_argument("--label", help="the row's label in plots (default: its name); rows of one label are the "
                                        "seeds of one configuration, drawn as mean and sd")
    report.add_argument("--command", dest="command_line", metavar="CMD",
                        help="the command that trained the run, recorded in its row (one run folder only)")
    report.add_argument("--note", help="free text recorded in the rows of the run folders given (threads, load, ...)")
    report.add_argument("--table", action="store_true",
                        help="print a Markdown table: a line per label (seeds as mean ± sd), dev scores, epochs")
    report.add_argument("--plot", type=Path, metavar="DIR",
                        help="write DIR/scores.png (needs matplotlib: the plots extra)")
    report.add_argument("--curves", metavar="NAME", help="also write DIR/curves-NAME.png for the row NAME")
    report.add_argument("--tasks", help="tasks to plot, in order (default: every task the rows report)")
    report.add_argument("--targets", metavar="TASK=SCORE,...", help="dashed target lines on scores.png")

    commands.add_parser("plugins", help="list every plugin, what it registers, and its hooks")

    return parser, registries


COMMANDS = {"run": command_run, "pretrain": command_pretrain, "study": command_study, "dashboard": command_dashboard,
            "evaluate": command_evaluate, "predict": command_predict, "encode": command_encode, "report": command_report,
            "plugins": command_plugins}


def main(argv: list[str] | None = None) -> int:
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 says what it does
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(message)s")
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
    finally:
        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
