import attrs
import pytest

from core.plugin.registry import Registry, RegistryError
from core.tasks.spec import TaskSpec


def test_register_and_lookup_by_name():
    registry = Registry("sampler")
    registry.register_for("alpha")("first", object, help="the first one")
    entry = registry["first"]
    assert (entry.name, entry.plugin, entry.help) == ("first", "alpha", "the first one")
    assert "first" in registry and registry.names() == ["first"]


def test_duplicate_names_both_plugins():
    registry = Registry("sampler")
    registry.register_for("alpha")("same", object)
    with pytest.raises(RegistryError, match="'same' is registered twice: by plugin 'alpha' and by plugin 'beta'"):
        registry.register_for("beta")("same", object)


def test_unknown_name_lists_available():
    registry = Registry("task")
    registry.register_for("p")("sst", object)
    with pytest.raises(RegistryError, match="unknown task 'nope'; available: sst"):
        registry["nope"]


def test_task_spec_registers_under_its_name_and_shows_its_description():
    registry = Registry("task", TaskSpec, named=True)
    spec = TaskSpec(name="mine", kind="single-classification", files={"train": "a", "dev": "b"}, text_columns=("t",),
                    description="my task, 2 classes")
    registry.register_for("p")(spec)
    assert registry["mine"].value is spec and registry["mine"].help == "my task, 2 classes"
    bare = attrs.evolve(spec, name="bare", description="")
    registry.register_for("p")(bare)
    assert registry["bare"].help == ""  # never the TaskSpec class's docstring


def test_config_must_be_attrs_class():
    registry = Registry("regularizer")
    with pytest.raises(RegistryError, match="must be an attrs class"):
        registry.register_for("p")("r", object, config=dict)

    @attrs.frozen
    class Settings:
        weight: float = 1.0

    registry.register_for("p")("r", object, config=Settings)
    assert registry["r"].config is Settings


def test_registration_goes_through_pluggy_and_tracing_sees_it():
    from core.plugin.manager import Registries, make_plugin_manager

    pm = make_plugin_manager(enabled=None, third_party=False)
    called = []
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: called.append((name, [i.plugin_name for i in impls])),
                                      lambda outcome, name, impls, kwargs: None)
    Registries(pm)
    undo()
    assert {name for name, _ in called} == {f"platform_register_{sort}" for sort in Registries.SORTS}
    tasks = [plugins for name, plugins in called if name == "platform_register_tasks"]
    assert sorted(plugin for plugins in tasks for plugin in plugins) == ["cfimdb", "quora", "sst", "sts"]
    assert all(len(plugins) == 1 for _, plugins in called)  # one plugin per call: register is bound to it


def test_a_component_of_the_wrong_type_is_refused_by_plugin_and_name():
    from core.tasks.spec import TaskSpec

    registry = Registry("task", TaskSpec, named=True)
    with pytest.raises(RegistryError, match="plugin 'p' registered a task without a name: 'sst'"):
        registry.register_for("p")("sst")
    samplers = Registry("sampler")
    with pytest.raises(RegistryError, match="plugin 'p' registered sampler 'x' as a int, not a callable"):
        samplers.register_for("p")("x", 3)
