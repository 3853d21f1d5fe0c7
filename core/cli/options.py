"""Settings classes as command-line options: every field of an attrs class becomes ``--[prefix-]field-name``."""

from __future__ import annotations

import argparse
import decimal
import typing
from typing import Any

import attrs


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


def _parser_for(annotation: Any):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    if base is int:
        return _integer
    if base is float:
        return _number
    if base is bool:
        return lambda text: text.lower() in ("1", "true", "yes", "on")
    return str


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, prefix: str = "") -> None:
    """Add ``--[prefix-]field-name`` for every field of the attrs class ``cls``; defaults stay unset
    (``argparse.SUPPRESS``) so only what the user typed overrides a base configuration."""
    hints = typing.get_type_hints(cls)
    for f in attrs.fields(cls):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
        shown = meta.get("default", ",".join(default) if isinstance(default, tuple) else default)
        dest = f"{prefix}{f.name}".replace("-", "_")
        if "positional" in meta:
            parser.add_argument(dest, metavar=meta["positional"], help=meta.get("help", ""))
            continue
        option = {"dest": dest, "default": argparse.SUPPRESS, "help": f"{meta.get('help', '')} (default: {shown})"}
        if meta.get("flag"):
            option.update(action="store_true", help=meta.get("help", ""))
        else:
            option.update(type=_parser_for(hints[f.name]), metavar=meta.get("metavar"), choices=meta.get("choices"))
            if meta.get("repeatable"):
                option.update(action="append", type=str)
        parser.add_argument(f"--{prefix}{f.name.replace('_', '-')}", **option)


def options_given(args: argparse.Namespace, cls: type, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` the user set on the command line, by field name."""
    given = vars(args)
    return {f.name: given[f"{prefix}{f.name}".replace("-", "_")] for f in attrs.fields(cls)
            if f"{prefix}{f.name}".replace("-", "_") in given}
