"""The ``platform`` command: every subcommand is a component of ``platform_commands`` (the built-in ones in
``core/cli/commands/``, registered through this distribution's entry points like any plugin's).

A command line is read in two passes. The first reads only what decides which plugins and components
take part (``--plugins``, ``--sampler``, ``--topology``, ``--balancer``, ``--masker``, and the configuration a
``--config FILE`` or ``--resume RUN_DIR`` names); the second parses the command's options, which are its
settings class's fields and, for a command that configures a run, the run's own options and the
settings of its active components only: ``platform run --plugins smart --help`` lists SMART's options,
and ``--smart-weight`` without ``--plugins smart`` is refused saying what would enable it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import SimpleNamespace
from typing import Any

import torch

from core.base import distributed, interrupts
from core.base.errors import ConfigError, PlatformError
from core.base.settings import build
from core.build.parts import chosen, default_of, lookup, not_active
from core.cli.configfile import CONFIGURATIONS, load_config_file, saved_configuration
from core.cli.parsing import add_options, merged, option_names, options_given
from core.plugin.component import Component
from core.plugin.invocation import Invocation
from core.plugin.manager import PluginManager, make_plugin_manager
from core.plugin.registries import WITH_SETTINGS, Registries

EARLY = ("plugins", "sampler", "topology", "balancer", "masker", "config", "resume")  # what the first pass reads


def main(argv: list[str] | None = None, pm: PluginManager | None = None) -> int:
    """``platform`` with ``argv`` (default: the process's arguments); ``pm``: a plugin manager to use instead
    of the one the command line asks for (a test's, with its fixture plugins)."""
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 says what it does
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = {number: signal.signal(number, interrupts.handler) for number in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    name = argv[0] if argv and not argv[0].startswith("-") else ""
    command: Component[Any] | None = None
    try:
        if not name:
            print(overview(Registries(make_plugin_manager(enabled=()))))
            return 0 if not argv or argv[0] in ("-h", "--help") else 2
        command, settings, invocation = read(argv, pm)
        return command.factory.run(settings, invocation)
    except PlatformError as error:  # bad input, named; anything else is a bug and keeps its traceback
        print(f"platform {name}: error: {error}".replace("platform : ", "platform: "), file=sys.stderr)
        return 2
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and not out_of_cpu_memory(error):
            raise
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"platform {name}: error: out of memory ({detail[:200]}); lower --batch-size, --max-batch-tokens or "
              "--eval-batch-size", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        said = command.factory.interrupted if command is not None else "nothing was changed"
        print(f"{'terminated' if isinstance(stop, interrupts.Terminated) else 'interrupted'}; {said}", file=sys.stderr)
        return 143 if isinstance(stop, interrupts.Terminated) else 130
    finally:
        distributed.teardown()
        for number, handler in previous.items():
            signal.signal(number, handler)


def read(argv: list[str], pm: PluginManager | None = None) -> tuple[Component[Any], Any, Invocation]:
    """The command ``argv`` names, its settings and its invocation (``pm``: the plugin manager to use
    instead of one with the plugins the command line enables)."""
    early = first_pass(argv[1:])
    registries = Registries(pm or make_plugin_manager(enabled=early.plugins))
    command = lookup(registries.commands, argv[0], "platform")
    settings, invocation = second_pass(command, argv[1:], registries, early)
    return command, settings, invocation


def parser_for(argv: list[str], pm: PluginManager | None = None) -> argparse.ArgumentParser:
    """The parser of the command ``argv`` names, with the options its other arguments make exist."""
    early = first_pass(argv[1:])
    registries = Registries(pm or make_plugin_manager(enabled=early.plugins))
    return command_parser(lookup(registries.commands, argv[0], "platform"), registries, early)


def out_of_cpu_memory(error: RuntimeError) -> bool:
    """Whether ``error`` is torch's CPU allocator failing (a RuntimeError, unlike a GPU's OutOfMemoryError)."""
    return "DefaultCPUAllocator" in str(error) and ("allocate memory" in str(error) or "not enough memory" in str(error))


def overview(registries: Registries) -> str:
    """``platform``'s help: its commands, each with one line."""
    width = max(len(name) for name in registries.commands.names())
    lines = [f"  {command.name:<{width}}  {command.help}" for command in registries.commands]
    return ("usage: platform COMMAND [options]   (platform COMMAND --help lists a command's options)\n\n"
            "Multitask fine-tuning of BERT-style encoders.\n\ncommands:\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------------
# First pass: which plugins and components take part
# --------------------------------------------------------------------------------------------------


def first_pass(argv: list[str]) -> SimpleNamespace:
    """The plugins to enable and the components to offer options for, from ``--plugins``, ``--sampler``,
    ``--topology``, ``--balancer`` and ``--masker``, else from the configuration ``--config FILE`` or ``--resume RUN_DIR``
    names; ``values`` holds that file's configuration values."""
    parser = argparse.ArgumentParser(add_help=False)
    for option in EARLY:
        parser.add_argument(f"--{option}")
    given, _ = parser.parse_known_args(argv)
    values: dict[str, Any] = {}
    if given.resume:
        values = saved_configuration(given.resume)
    elif given.config:
        values = load_config_file(given.config)
    pick = {option: getattr(given, option) if getattr(given, option) is not None else values.get(option, "")
            for option in EARLY[:5]}
    plugins = pick["plugins"]
    plugins = tuple(name.strip() for name in plugins.split(",") if name.strip()) if isinstance(plugins, str) \
        else tuple(plugins)
    return SimpleNamespace(**{**pick, "plugins": plugins}, values=values, resume=given.resume)


def active_components(command: Component[Any], registries: Registries, early: SimpleNamespace) -> list[Component[Any]]:
    """The components whose settings are options of ``command``: a run's sampler, topology, balancer,
    regularizers and model transforms; pretraining's masker."""
    configures = command.factory.configures
    if early.resume and configures:  # every setting is an option, so that a change is refused as such
        installed = Registries(make_plugin_manager(enabled=None))
        families = ("samplers", "topologies", "balancers", "regularizers", "model_transforms") \
            if configures == "run" else ("maskers",)
        return [component for family in families for component in installed.family(family)]
    if configures == "run":
        sampler = (lookup(registries.samplers, early.sampler, "--sampler") if early.sampler
                   else default_of(registries.samplers))
        return [sampler, chosen(registries, "topologies", early.topology), *run_balancers(registries, early.balancer),
                *registries.regularizers, *registries.model_transforms]
    if configures == "pretrain":
        return [lookup(registries.maskers, early.masker, "--masker") if early.masker else default_of(registries.maskers)]
    return []


def run_balancers(registries: Registries, balancer: str) -> list[Component[Any]]:
    """The balancers whose settings are options: ``--balancer``'s; without it, every enabled opt-in plugin's
    when there are several (a study draws one per trial; a run is told to choose), else the one chosen."""
    offered = [component for component in registries.balancers if registries.opt_in(component)]
    if not balancer and len(offered) > 1:
        return offered
    return [chosen(registries, "balancers", balancer)]


# --------------------------------------------------------------------------------------------------
# Second pass: the command's options
# --------------------------------------------------------------------------------------------------


def command_parser(command: Component[Any], registries: Registries, early: SimpleNamespace) -> argparse.ArgumentParser:
    """The parser of ``command``: its settings' options, and those of the configuration it configures."""
    parser = argparse.ArgumentParser(prog=f"platform {command.name}", description=command.factory.description or
                                     command.help)
    if command.settings is not None:
        add_options(parser, command.settings)
    configuration = CONFIGURATIONS.get(command.factory.configures)
    if configuration is not None:
        title = "configuration" if command.name != "study" else "base configuration of the trials"
        group = parser.add_argument_group(title)
        add_options(group, configuration)
        group.add_argument("--config", metavar="FILE",
                           help="read the configuration from FILE (TOML with the option names as keys, components' "
                                "settings in [components.NAME] tables, or an earlier run's config.json); options "
                                "given beside it override it")
        for component in active_components(command, registries, early):
            if component.settings is not None:
                title = f"{component.name} ({registries.what_of(component)} from plugin {component.plugin})"
                add_options(parser.add_argument_group(title, component.help), component.settings,
                            prefix=f"{component.name}-")
    return parser


def second_pass(command: Component[Any], argv: list[str], registries: Registries,
                early: SimpleNamespace) -> tuple[Any, Invocation]:
    """The command's settings and its invocation, from the command line."""
    parser = command_parser(command, registries, early)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse_unknown(parser, unknown, registries, early)
    settings = None
    if command.settings is not None:
        settings = build(command.settings, options_given(args, command.settings))
    configuration = CONFIGURATIONS.get(command.factory.configures)
    if configuration is None:
        return settings, Invocation(registries.pm, registries)
    if getattr(args, "config", None):
        load_config_file(args.config, configuration)  # its names, checked against this command's configuration
    typed = options_given(args, configuration)
    components = {}
    for component in active_components(command, registries, early):
        if component.settings is not None:
            given = options_given(args, component.settings, prefix=f"{component.name}-")
            if given:
                build(component.settings, given, prefix=f"{component.name}-")  # a bad value, named, now
                components[component.name] = given
    if components:
        typed["components"] = components
    base = {} if getattr(args, "resume", None) else early.values
    return settings, Invocation(registries.pm, registries, merged(base, typed), typed)


def refuse_unknown(parser: argparse.ArgumentParser, unknown: list[str], registries: Registries,
                   early: SimpleNamespace) -> None:
    """Options the command does not have: when they are settings of a component that takes no part, say
    what would make it take part; otherwise argparse's own message."""
    installed = Registries(make_plugin_manager(enabled=None))
    options = [word.split("=", 1)[0] for word in unknown if word.startswith("--")]
    for component in (c for family in WITH_SETTINGS for c in installed.family(family)):
        if component.settings is None:
            continue
        names = option_names(component.settings, prefix=f"{component.name}-")
        settings = [names[option] for option in options if option in names]
        if settings:
            config = SimpleNamespace(plugins=early.plugins, topology=early.topology, balancer=early.balancer)
            names = {"samplers": early.sampler or default_of(registries.samplers).name,
                     "topologies": chosen(registries, "topologies", early.topology).name,
                     "balancers": ",".join(c.name for c in run_balancers(registries, early.balancer)),
                     "maskers": early.masker or default_of(registries.maskers).name}
            raise ConfigError(not_active(config, component.name, settings, registries, names))
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
