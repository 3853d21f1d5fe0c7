"""Settings classes as command-line options: every field of an attrs class becomes ``--[prefix-]field-name``.

A field's ``metadata`` shapes its option: ``metavar``, ``choices``, ``default`` (the text shown in the
help), ``flag`` (a switch), ``repeatable`` (the option may be given several times), ``positional`` (an
argument, named so in the usage line) with ``nargs``, ``option`` (the option's name, when not the
field's), and ``cli`` False (no option). Values are passed
to the settings class as typed, so each field's converter and validators parse and check them once.
"""

from __future__ import annotations

import argparse
import decimal
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from core.base.settings import shown


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, prefix: str = "") -> None:
    """Add ``--[prefix-]field-name`` for every field of the attrs class ``cls``; defaults stay unset
    (``argparse.SUPPRESS``) so only what the user typed overrides a base configuration."""
    hints = typing.get_type_hints(cls)
    for f in attrs.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[arg-type]
        dest = f"{prefix}{f.name}".replace("-", "_")
        if "positional" in meta:
            nargs = meta.get("nargs")
            parser.add_argument(dest, metavar=meta["positional"], help=meta.get("help", ""), nargs=nargs,
                                type=_parser_for(hints[f.name]), **({"default": default} if nargs == "?" else {}))
            continue
        option: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS,
                                  "help": f"{meta.get('help', '')} (default: {meta.get('default', shown(default))})"}
        if meta.get("flag"):
            option.update(action="store_true", help=meta.get("help", ""))
        else:
            option.update(type=_parser_for(hints[f.name]), metavar=meta.get("metavar"), choices=meta.get("choices"))
            if meta.get("repeatable"):
                option.update(action="append", type=str)
        parser.add_argument(f"--{prefix}{meta.get('option', f.name).replace('_', '-')}", **option)


def options_given(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` the user set on the command line, by field name."""
    given = vars(args)
    return {f.name: given[f"{prefix}{f.name}".replace("-", "_")] for f in attrs.fields(cls)
            if f"{prefix}{f.name}".replace("-", "_") in given}


def option_names(cls: type, prefix: str = "") -> dict[str, str]:
    """``--[prefix-]field-name`` -> field name, for every option of ``cls``."""
    return {f"--{prefix}{f.metadata.get('option', f.name).replace('_', '-')}": f.name for f in attrs.fields(cls)
            if f.metadata.get("cli") is not False and "positional" not in f.metadata}


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    """How the text of an option becomes the value its field takes: numbers and switches parsed (``none``
    for an optional number), paths as paths, anything else (names, ``TASK=VALUE`` lists) as text, which
    the field's converter parses."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    if typing.get_origin(base) in (list, tuple) and typing.get_args(base):
        base = typing.get_args(base)[0]  # the type of one of several values (nargs)
    if base is int:
        return _integer
    if base is float:
        return _number
    if base is bool:
        return lambda text: text.lower() in ("1", "true", "yes", "on")
    if base is Path:
        return Path
    return str


def _integer(text: str) -> int | None:
    """An integer option's value: ``none``, digits, or any exact integer in number notation (``1e23``:
    the settings class then says whether it is in range)."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


def _number(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def merged(base: Mapping[str, Any], typed: Mapping[str, Any]) -> dict[str, Any]:
    """Configuration values ``typed`` over ``base``, component settings merged component by component."""
    components = {name: dict(settings) for name, settings in base.get("components", {}).items()}
    for name, settings in typed.get("components", {}).items():
        components.setdefault(name, {}).update(settings)
    return {**base, **typed, **({"components": components} if components else {})}
