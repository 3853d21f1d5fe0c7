"""Settings as data: the field helper, validators and converters that every settings class (attrs,
frozen, with help text) shares, and :func:`build`, which reports a bad value naming its option.

The same classes feed the command line (``core.cli.parsing``), Optuna trials, ``--config`` files and saved
runs. A per-task setting (batch ratios, loss weights, teachers) is a dict typed by its field
(``dict[str, int]``, ...) and parsed once, by its converter (:func:`assignments`), from the text
``sst=8,quora=32`` an option gives or from the mapping a file or a search space gives.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import attrs

from core.base.errors import ConfigError


def names(value: Any) -> tuple[str, ...]:
    """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``."""
    if isinstance(value, str):
        value = value.split(",")
    return tuple(name.strip() for name in value if name.strip())


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def positive_or_none(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        positive(instance, attribute, value)


SEED_MAX = 2**32 - 1  # seeds are mixed into derived 64-bit seeds (per epoch, per process): 32 bits leave room


def valid_seed(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A random seed: an integer in 0..SEED_MAX (torch takes 64 bits, and the platform derives seeds from it)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= SEED_MAX:
        raise ValueError(f"{attribute.name} must be an integer in 0..{SEED_MAX}, got {value}")


def distinct(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    """No name given twice in a list of names (``--tasks sst,sst``)."""
    repeated = sorted({name for name in value if value.count(name) > 1})
    if repeated:
        raise ValueError(f"{attribute.name}: {', '.join(repr(name) for name in repeated)} given twice in "
                         f"{','.join(value)}; name each once")


def check_finite(values: dict[str, Any], prefix: str = "") -> None:
    """Refuse an infinite or NaN float (``--lr inf``, ``--lr nan``): it passes range checks such as ``> 0``
    and then poisons every weight, or waits forever. Raises ValueError naming the field."""
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{prefix}{name} must be a finite number, got {value}")


def parse_assignments(text: str, option: str, expected: str, key: str = "task",
                      error: type[ValueError] = ConfigError) -> dict[str, str]:
    """``"sst=8,quora=32"`` -> ``{"sst": "8", "quora": "32"}``: the NAME=VALUE lists that options take
    (sampler ratios, teachers, objective weights, enqueued trials). Raises ``error`` naming ``option``
    and the first entry without a name or a value (``expected`` says what one looks like), or the
    first ``key`` given twice; the caller checks the values."""
    pairs: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, value = (part.strip() for part in entry.partition("="))
        if not sep or not name or not value:
            raise error(f"{option}: bad entry {entry!r}; expected {expected}")
        if name in pairs:
            raise error(f"{option}: {key} {name!r} is given twice in {text!r}")
        pairs[name] = value
    return pairs


def field(default: Any, help: str, metadata: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """A settings field with its help text. ``metadata`` shapes its option (:func:`add_options`):
    ``metavar``, ``choices``, ``default`` (the text shown), ``flag`` (a switch), ``repeatable``,
    ``positional`` (its name in the usage line), ``cli`` (False: no option)."""
    return attrs.field(default=default, metadata={"help": help, **(metadata or {})}, **kwargs)


def assignments(value_type: type, expected: str, check: Callable[[Any], bool] | None = None) -> Any:
    """The converter of a ``NAME=VALUE,...`` setting into a ``dict[str, value_type]``: from text
    (``"sst=8,quora=32"``) or a mapping; ``check(value)`` False, or a value that is not a
    ``value_type``, raises a ValueError naming the field, the entry and ``expected`` (an example)."""

    def convert(value: Any, field: attrs.Attribute) -> dict[str, Any]:
        items = ({str(name): raw for name, raw in value.items()} if isinstance(value, Mapping)
                 else parse_assignments(str(value or ""), field.name, expected, error=ValueError))
        parsed = {}
        for name, raw in items.items():
            try:
                if isinstance(raw, bool) or (value_type is int and isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                typed = value_type(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{field.name}: bad entry {f'{name}={raw}'!r}; expected {expected}") from None
            if check is not None and not check(typed):
                raise ValueError(f"{field.name}: bad entry {f'{name}={raw}'!r}; expected {expected}")
            parsed[name] = typed
        return parsed

    return attrs.Converter(convert, takes_field=True)


def is_positive(value: float) -> bool:
    """A positive, finite number."""
    return math.isfinite(value) and value > 0


def shown(value: Any) -> str:
    """A setting's value as an option takes it: ``a,b`` for names, ``sst=8,quora=32`` for assignments."""
    if isinstance(value, Mapping):
        return ",".join(f"{name}={item:g}" if isinstance(item, float) else f"{name}={item}"
                        for name, item in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def build(cls: type, values: dict[str, Any], source: str = "", prefix: str = "") -> Any:
    """``cls(**values)``; a bad value is reported naming its option (``--[prefix]field-name``), after
    ``source`` (where the values came from: a file, a component) when given."""
    try:
        check_finite(values)
        return cls(**values)
    except (TypeError, ValueError) as error:
        text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)  # attrs' in_ adds args
        message = _name_option(text, cls, prefix)
        raise ConfigError(f"{source}: {message}" if source else message) from None


def _name_option(message: str, cls: type, prefix: str) -> str:
    """attrs' validators say ``'epochs' must be >= 1: 0``, ours ``ratios: bad entry ...``: either way,
    the field's option instead of its name."""
    for f in attrs.fields(cls):
        option = f"--{prefix}{f.name}".replace("_", "-")
        for lead, replacement in ((f"'{f.name}' ", f"{option} "), (f"{f.name}: ", f"{option}: "),
                                  (f"{f.name} ", f"{option} ")):
            if message.startswith(lead):
                return replacement + message[len(lead):]
    return message
