"""docs/methods.md: a `##` section per method, named after its plugin, which documents every option of the
plugin's components, says that its own search space exists, and what the method costs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.cli.parsing import option_names
from core.plugin.manager import make_plugin_manager
from core.plugin.registries import WITH_SETTINGS, Registries

PAGE = Path(__file__).parents[2] / "docs" / "methods.md"


def sections() -> dict[str, str]:
    """Method name -> its section's text, for every `## name` heading of one word (a plugin's name)."""
    parts = re.split(r"^## (\S+)\n", PAGE.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_the_experts_topologies_and_the_temperature_sampler_have_a_section_each():
    assert {"mmoe", "ple", "temperature"} <= set(sections())


@pytest.mark.parametrize("plugin", sorted(sections()))
def test_a_section_documents_its_plugins_options_space_and_cost(plugin):
    pm = make_plugin_manager(enabled=None)
    assert pm.get_plugin(plugin) is not None, f"docs/methods.md has a section {plugin!r}, but no plugin of that name"
    registries = Registries(pm)
    components = [component for family in WITH_SETTINGS for component in registries.family(family)
                  if component.plugin == plugin]
    text = sections()[plugin].lower()
    assert "cost" in text
    for component in components:
        if component.settings is not None:
            for option in option_names(component.settings, f"{component.name}-"):
                assert f"`{option}`" in text, option
        if component.space is not None:
            assert "search space" in text
