"""Search spaces as a study sees them: the space file, the trial proxy that applies it, and the
configuration a trial trains with.

Spaces come from plugins: the spaces over a run's own settings (``platform_search_spaces``:
``space(trial, base)`` returns overrides of fields of the base :class:`~core.experiment.config.RunConfig`), and
the own space of every component that takes part in the base configuration (``Component.space``: it
returns values of that component's settings), so no space switches on which components are chosen.
A space file narrows or fixes any suggested parameter by name; :class:`SpaceTrial` stands between
the spaces and the Optuna trial to apply it, so no space needs to know about space files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import attrs
import tomllib

from core.base.errors import PlatformError
from core.base.settings import parse_assignments
from core.plugin.component import SearchSpace
from core.experiment.config import RunConfig
from studies.table import aligned

RANGE_KEYS = ("low", "high", "log", "step")
UNSEARCHABLE = ("output_dir", "components")  # a component's settings are searched by its own space


class SpaceError(PlatformError):
    """A space file, or a search space, that cannot be used; the message names the file or the space."""


@attrs.frozen
class ActiveSpace:
    """A search space of a study: over the run's own settings (``component`` empty) or over the settings
    of the component named ``component``."""

    name: str
    plugin: str
    space: SearchSpace
    component: str = ""


# --------------------------------------------------------------------------------------------------
# The space file
# --------------------------------------------------------------------------------------------------


@attrs.frozen
class Rule:
    """How a space file changes one parameter: a narrower range, fewer choices, or a fixed value."""

    name: str
    source: str
    low: float | None = None
    high: float | None = None
    log: bool | None = None
    step: float | None = None
    choices: tuple | None = None
    value: Any = None

    @property
    def fixed(self) -> bool:
        return self.value is not None

    def where(self) -> str:
        return f"{self.source}: [params.{self.name}]"


def load_space_file(path: str | Path) -> dict[str, Rule]:
    """The ``[params.NAME]`` tables of a TOML space file, checked for shape (names are checked later,
    against what the active spaces suggest)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"--space-file: no such file: {path}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpaceError(f"{path}: not valid TOML: {error}") from None
    extra = sorted(set(data) - {"params"})
    if extra:
        raise SpaceError(f"{path}: unknown top-level key(s) {extra}; a space file holds [params.NAME] tables only")
    rules = {}
    for name, table in data.get("params", {}).items():
        if not isinstance(table, dict):  # `dropout = 0.1` under [params]: a fixed value
            table = {"value": table}
        rules[name] = _rule(name, table, str(path))
    return rules


def _rule(name: str, table: dict, source: str) -> Rule:
    where = f"{source}: [params.{name}]"
    unknown = sorted(set(table) - {*RANGE_KEYS, "choices", "value"})
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {unknown}; use low/high/log/step, choices, or value")
    if "value" in table and len(table) > 1:
        raise SpaceError(f"{where}: 'value' fixes the parameter; give it alone (got {sorted(table)})")
    if "choices" in table and set(table) & set(RANGE_KEYS):
        raise SpaceError(f"{where}: give either 'choices' or a range (low/high/log/step), not both")
    for key in ("low", "high", "step"):
        if key in table and (isinstance(table[key], bool) or not isinstance(table[key], (int, float))):
            raise SpaceError(f"{where}: {key} must be a number, got {table[key]!r}")
    if "log" in table and not isinstance(table["log"], bool):
        raise SpaceError(f"{where}: log must be true or false, got {table['log']!r}")
    if "choices" in table:
        if not isinstance(table["choices"], list) or not table["choices"]:
            raise SpaceError(f"{where}: empty choices; list at least one, e.g. choices = [\"mean\"]")
        table = {**table, "choices": tuple(table["choices"])}
    rule = Rule(name, source, **table)
    _check_range(rule, rule.low, rule.high, rule.log, rule.step)
    return rule


def _check_range(rule: Rule, low, high, log, step) -> None:
    if low is not None and high is not None and low > high:
        raise SpaceError(f"{rule.where()}: inverted range: low {low} > high {high}")
    if log and low is not None and low <= 0:
        raise SpaceError(f"{rule.where()}: a log scale needs low > 0, got {low}")
    if log and step is not None:
        raise SpaceError(f"{rule.where()}: give either log = true or a step, not both")
    if step is not None and step <= 0:
        raise SpaceError(f"{rule.where()}: step must be positive, got {step}")


# --------------------------------------------------------------------------------------------------
# The trial proxy
# --------------------------------------------------------------------------------------------------


@attrs.frozen
class Suggested:
    """One parameter as it is searched: its effective distribution, and the space that suggests it."""

    name: str
    kind: str  # float, int, categorical
    space: str
    plugin: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None
    value: Any = None
    rule: Rule | None = None

    def distribution(self) -> str:
        if self.rule is not None and self.rule.fixed:
            return "fixed"
        scale = " (log)" if self.log else f" (step {self.step})" if self.step not in (None, 1) else ""
        return f"{self.kind}{scale}"

    def domain(self) -> str:
        if self.rule is not None and self.rule.fixed:
            return repr(self.value)
        if self.kind == "categorical":
            return ", ".join(str(c) for c in self.choices or ())
        return f"{self.low:g} .. {self.high:g}"


class SpaceTrial:
    """An Optuna trial as the search spaces see it: every other attribute is the trial's own, while
    ``suggest_float``, ``suggest_int`` and ``suggest_categorical`` apply the space file's rules (a
    fixed value is not suggested; it is recorded as the user attribute ``fixed:NAME``)."""

    def __init__(self, trial: Any, rules: dict[str, Rule] | None = None):
        self._trial = trial
        self._rules = rules or {}
        self.space: ActiveSpace | None = None  # the space now suggesting
        self.suggested: dict[str, Suggested] = {}
        self.values: dict[str, Any] = {}  # what each parameter took in this trial, suggested or fixed
        self.dry = False  # a dry run, which lists every parameter, also those of branches the trial did not take

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        low, high, step, log, rule = self._narrow(name, "float", low, high, step, log)
        if rule is not None and rule.fixed:
            return self._fix(name, "float", float(rule.value), rule, low=low, high=high)
        value = self._trial.suggest_float(name, low, high, step=step, log=log)
        self._record(Suggested(name, "float", *self._origin(), low=low, high=high, log=log, step=step, rule=rule),
                     value)
        return value

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        low, high, step, log, rule = self._narrow(name, "int", low, high, step, log)
        if rule is not None and rule.fixed:
            if isinstance(rule.value, bool) or not isinstance(rule.value, int):
                raise SpaceError(f"{rule.where()}: {name} is an integer parameter; value must be an integer, "
                                 f"got {rule.value!r}")
            return self._fix(name, "int", rule.value, rule, low=low, high=high)
        for key, number in (("low", low), ("high", high), ("step", step)):
            if not float(number).is_integer():
                where = rule.where() if rule is not None else f"search space {self._origin()[0]!r}"
                raise SpaceError(f"{where}: {name} is an integer parameter; {key} must be an integer, got {number}")
        low, high, step = int(low), int(high), int(step)
        value = self._trial.suggest_int(name, low, high, step=step, log=log)
        self._record(Suggested(name, "int", *self._origin(), low=low, high=high, log=log, step=step, rule=rule),
                     value)
        return value

    def suggest_categorical(self, name: str, choices: Iterable) -> Any:
        rule = self._rules.get(name)
        if rule is not None and any(getattr(rule, key) is not None for key in RANGE_KEYS):
            raise SpaceError(f"{rule.where()}: {name} is categorical ({', '.join(map(str, choices))}); "
                             "narrow it with choices = [...] or fix it with value = ...")
        if rule is not None and rule.fixed:
            return self._fix(name, "categorical", rule.value, rule, choices=tuple(choices))
        choices = rule.choices if rule is not None and rule.choices is not None else tuple(choices)
        value = self._trial.suggest_categorical(name, list(choices))
        self._record(Suggested(name, "categorical", *self._origin(), choices=tuple(choices), rule=rule), value)
        return value

    def _narrow(self, name, kind, low, high, step, log):
        rule = self._rules.get(name)
        if rule is None or rule.fixed:
            return low, high, step, log, rule
        if rule.choices is not None:
            raise SpaceError(f"{rule.where()}: {name} is a {kind} range ({low:g} .. {high:g}); narrow it with "
                             "low/high (log, step) or fix it with value = ...")
        low = rule.low if rule.low is not None else low
        high = rule.high if rule.high is not None else high
        log = rule.log if rule.log is not None else (False if rule.step is not None else log)  # a step: linear
        step = rule.step if rule.step is not None else (None if log and kind == "float" else step)
        if log and kind == "int":
            step = 1
        _check_range(rule, low, high, log, step if kind == "float" else None)
        return low, high, step, log, rule

    def _fix(self, name, kind, value, rule, **distribution):
        self._trial.set_user_attr(f"fixed:{name}", value)
        self._record(Suggested(name, kind, *self._origin(), value=value, rule=rule, **distribution), value)
        return value

    def _origin(self) -> tuple[str, str]:
        return (self.space.name, self.space.plugin) if self.space is not None else ("", "")

    def _record(self, suggested: Suggested, value: Any) -> None:
        earlier = self.suggested.get(suggested.name)
        if earlier is not None and earlier.space != suggested.space:
            raise SpaceError(f"parameter {suggested.name!r} is suggested by two search spaces: {earlier.space!r} "
                             f"(plugin {earlier.plugin}) and {suggested.space!r} (plugin {suggested.plugin}); "
                             "rename one")
        self.suggested[suggested.name] = suggested
        self.values[suggested.name] = value


# --------------------------------------------------------------------------------------------------
# From suggestions to a trial's configuration
# --------------------------------------------------------------------------------------------------


def overrides(trial: SpaceTrial, spaces: Iterable[ActiveSpace], base: RunConfig) -> dict[str, Any]:
    """The overrides of every space, merged: top-level fields replaced, a component's settings merged
    into the base's ``components``. Two spaces setting the same thing is an error naming both."""
    fields = attrs.fields_dict(RunConfig)
    merged: dict[str, Any] = {}
    components = {name: dict(settings) for name, settings in base.components.items()}
    owner: dict[str, str] = {}

    def claim(key: str, space: ActiveSpace) -> None:
        if key in owner:
            raise SpaceError(f"search spaces {owner[key]!r} and {space.name!r} (plugin {space.plugin}) both set {key}")
        owner[key] = space.name

    for space in spaces:
        trial.space = space
        result = space.space(trial, base) or {}
        if not isinstance(result, dict):
            raise SpaceError(f"search space {space.name!r} (plugin {space.plugin}) returned {type(result).__name__}, "
                             "not a dict of configuration overrides")
        for key, value in result.items():
            if space.component:
                claim(f"components.{space.component}.{key}", space)
                components.setdefault(space.component, {})[key] = value
            elif key not in fields or key in UNSEARCHABLE:
                raise SpaceError(f"search space {space.name!r} (plugin {space.plugin}) overrides {key!r}, which is not "
                                 f"a searchable setting; known: {', '.join(sorted(set(fields) - set(UNSEARCHABLE)))}")
            else:
                claim(key, space)
                merged[key] = value
    trial.space = None
    return {**merged, "components": components}


def trial_config(base: RunConfig, spaces: Iterable[ActiveSpace], trial: SpaceTrial, output_dir: str | Path) -> RunConfig:
    """The base configuration with every space's overrides, training into ``output_dir``."""
    return attrs.evolve(base, **overrides(trial, spaces, base), output_dir=str(output_dir))


def dry_run(base: RunConfig, spaces: list[ActiveSpace], rules: dict[str, Rule], source: str = "--space-file",
            check: Any = None) -> dict[str, Suggested]:
    """Run every space once on a throwaway trial: the effective space by parameter name. Refuses rules
    for parameters no active space suggests, and overrides that make an invalid configuration
    (``check(config)`` may look further, e.g. at component settings)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        throwaway = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    finally:
        optuna.logging.set_verbosity(verbosity)
    trial = SpaceTrial(throwaway, rules)
    trial.dry = True
    try:
        config = trial_config(base, spaces, trial, output_dir="dry-run")
        if check is not None:
            check(config)
    except SpaceError:
        raise
    except (TypeError, ValueError) as error:
        names = ", ".join(f"{space.name!r} (plugin {space.plugin})" for space in spaces)
        raise SpaceError(f"the search spaces {names} make an invalid configuration: {error}") from None
    unknown = sorted(set(rules) - set(trial.suggested))
    if unknown:
        known = ", ".join(sorted(trial.suggested)) or "none"
        raise SpaceError(f"{source}: unknown parameter(s) {', '.join(unknown)}; the active search spaces suggest: "
                         f"{known} (spaces of opt-in plugins count only when enabled with --plugins)")
    return trial.suggested


def parse_enqueued(text: str, suggested: dict[str, Suggested], source: str = "--enqueue") -> dict[str, Any]:
    """``"smart_weight=5,ratio_sst=32"``: the parameter values of a trial to run before the sampler's own,
    each parsed and checked against its effective distribution (a fixed parameter is not searched)."""
    values: dict[str, Any] = {}
    given = parse_assignments(text, source, "NAME=VALUE, e.g. 'smart_weight=5,ratio_sst=32'", key="parameter",
                              error=SpaceError)
    for name, raw in given.items():
        if name not in suggested:
            known = ", ".join(sorted(suggested)) or "none"
            raise SpaceError(f"{source}: unknown parameter {name!r}; the active search spaces suggest: {known}")
        param = suggested[name]
        if param.rule is not None and param.rule.fixed:
            raise SpaceError(f"{source}: {name} is fixed at {param.value!r} by {param.rule.where()}; "
                             "only searched parameters can be enqueued")
        values[name] = _enqueued_value(param, raw, source)
    if not given:
        raise SpaceError(f"{source}: no parameters in {text!r}; expected NAME=VALUE,...")
    return values


def _enqueued_value(param: Suggested, raw: str, source: str) -> Any:
    if param.kind == "categorical":
        matches = [choice for choice in param.choices or () if str(choice) == raw]
        if not matches:
            raise SpaceError(f"{source}: {param.name}={raw} is not one of its choices ({param.domain()})")
        return matches[0]
    try:
        value = int(raw) if param.kind == "int" else float(raw)
    except ValueError:
        raise SpaceError(f"{source}: {param.name}={raw} is not {'an integer' if param.kind == 'int' else 'a number'}") from None
    if param.low is None or param.high is None or not param.low <= value <= param.high:
        raise SpaceError(f"{source}: {param.name}={raw} is outside its range {param.domain()}")
    return value


def format_space(suggested: dict[str, Suggested]) -> str:
    """The effective space as a table: parameter, distribution, range or choices, where it comes from."""
    rows = [("parameter", "distribution", "range / choices", "from")]
    for s in suggested.values():
        changed = "" if s.rule is None else "fixed" if s.rule.fixed else "narrowed"
        origin = f"space {s.space!r} (plugin {s.plugin})" + (f", {changed} by the space file" if changed else "")
        rows.append((s.name, s.distribution(), s.domain(), origin))
    return aligned(rows)

