"""Registries: components of one family by name, checked where they are registered."""

import attrs
import pytest

from core.plugin.component import Component
from core.plugin.registry import Family, Registry, RegistryError
from core.tasks.spec import TaskSpec

SAMPLERS = Family("platform_samplers", "sampler")
TASKS = Family("platform_tasks", "task", TaskSpec)


def test_register_and_lookup_by_name():
    registry = Registry(SAMPLERS)
    registry.add(Component("first", object, help="the first one"), "alpha")
    component = registry["first"]
    assert (component.name, component.plugin, component.help) == ("first", "alpha", "the first one")
    assert "first" in registry and registry.names() == ["first"] and registry.factories() == {"first": object}


def test_a_name_two_plugins_register_is_usable_by_neither_and_names_both():
    registry = Registry(SAMPLERS)
    registry.add(Component("same", object), "alpha")
    registry.add(Component("other", object), "alpha")
    registry.add(Component("same", object), "beta")
    with pytest.raises(RegistryError, match="'same' is registered twice: by plugin 'alpha' and by plugin 'beta'"):
        registry["same"]
    assert registry["other"].plugin == "alpha" and [c.name for c in registry] == ["other"]


def test_unknown_name_lists_available():
    registry = Registry(TASKS)
    spec = TaskSpec(name="sst", kind="single-classification", files={"train": "a", "dev": "b"}, text_columns=("t",))
    registry.add(Component.of(spec), "p")
    with pytest.raises(RegistryError, match="unknown task 'nope'; available: sst"):
        registry["nope"]


def test_task_spec_registers_under_its_name_and_shows_its_description():
    registry = Registry(TASKS)
    spec = TaskSpec(name="mine", kind="single-classification", files={"train": "a", "dev": "b"}, text_columns=("t",),
                    description="my task, 2 classes")
    registry.add(Component.of(spec, default=True), "p")
    assert registry["mine"].factory is spec and registry["mine"].help == "my task, 2 classes"
    bare = attrs.evolve(spec, name="bare", description="")
    registry.add(Component.of(bare), "p")
    assert registry["bare"].help == ""  # never the TaskSpec class's docstring
    assert [c.name for c in registry.defaults()] == ["mine"]
    with pytest.raises(RegistryError, match="registered task 'bare' under the name 'other'"):
        registry.add(Component("other", bare), "p")


def test_settings_must_be_an_attrs_class():
    registry = Registry(Family("platform_regularizers", "regularizer"))
    with pytest.raises(RegistryError, match="must be an attrs class"):
        registry.add(Component("r", object, settings=dict), "p")

    @attrs.frozen
    class Settings:
        weight: float = 1.0

    registry.add(Component("r", object, settings=Settings), "p")
    assert registry["r"].settings is Settings


def test_registration_goes_through_pluggy_and_tracing_sees_it():
    from core.plugin.manager import make_plugin_manager
    from core.plugin.registries import FAMILIES, Registries

    pm = make_plugin_manager(enabled=None, third_party=False)
    called = []
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: called.append((name, [i.plugin_name for i in impls])),
                                      lambda outcome, name, impls, kwargs: None)
    Registries(pm)
    undo()
    assert {name for name, _ in called} == {family.hook for family in FAMILIES.values()}
    tasks = [plugins for name, plugins in called if name == "platform_tasks"]
    assert sorted(plugin for plugins in tasks for plugin in plugins) == ["cfimdb", "quora", "sst", "sts"]
    assert all(len(plugins) == 1 for _, plugins in called)  # one plugin per call: its components are its own


def test_a_component_of_the_wrong_type_is_refused_by_plugin_and_name():
    registry = Registry(TASKS)
    with pytest.raises(RegistryError, match="plugin 'p' registered a task without a name: 'sst'"):
        registry.add(Component("", "sst"), "p")
    with pytest.raises(RegistryError, match="plugin 'p' registered task 'x' as a str, not TaskSpec"):
        registry.add(Component("x", "sst"), "p")
    samplers = Registry(SAMPLERS)
    with pytest.raises(RegistryError, match="plugin 'p' registered sampler 'x' as a int, not a callable"):
        samplers.add(Component("x", 3), "p")
    with pytest.raises(RegistryError, match="plugin 'p': its platform_samplers returned 'x', not a Component"):
        samplers.add("x", "p")
