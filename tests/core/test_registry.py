import attrs
import pytest

from core.registry import Registry, RegistryError
from core.tasks import SINGLE_CLASSIFICATION, TaskSpec


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


def test_task_spec_registers_under_its_name():
    registry = Registry("task")
    spec = TaskSpec(name="mine", kind=SINGLE_CLASSIFICATION, files={"train": "a", "dev": "b"}, text_columns=("t",))
    registry.register_for("p")(spec)
    assert registry["mine"].value is spec


def test_config_must_be_attrs_class():
    registry = Registry("regularizer")
    with pytest.raises(RegistryError, match="must be an attrs class"):
        registry.register_for("p")("r", object, config=dict)

    @attrs.frozen
    class Settings:
        weight: float = 1.0

    registry.register_for("p")("r", object, config=Settings)
    assert registry["r"].config is Settings
