"""The plugin manager against plugin authors' mistakes, with real installed distributions (a dist-info folder
with its entry points, on the path of a real `platform` process): a plugin that fails to import, two plugins
providing one name, a plugin that implements no hook or a hook that does not exist. Each is named, and the
commands that do not use the faulty plugin still run."""

from pathlib import Path

import pytest

from tests.helpers import platform_beside

pytestmark = pytest.mark.integration


def install(site: Path, name: str, source: str) -> Path:
    """A distribution ``platform-<name>`` whose entry point ``name`` is the module ``<name>_plugin``."""
    (site / f"{name}_plugin.py").write_text(source)
    info = site / f"platform_{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: platform-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[platform]\n{name} = {name}_plugin\n")
    return site


TWIN = '''
from core.api import Component, TaskSpec, hookimpl

@hookimpl
def platform_tasks():
    return [Component.of(TaskSpec(name="twin", kind="single-classification", files={{"train": "t", "dev": "d"}},
                                  text_columns=("s",), description="{who}'s twin"))]
'''


def test_a_plugin_that_fails_to_import_is_listed_as_broken_and_other_commands_run(tmp_path):
    site = install(tmp_path, "broken", "import a_module_nobody_installed\n")
    listed = platform_beside(["plugins"], site)
    assert listed.returncode == 0, listed.stderr
    assert ("broken  [broken]  importing broken_plugin failed: ModuleNotFoundError: No module named "
            "'a_module_nobody_installed'") in listed.stdout
    assert "sst  [always on]" in listed.stdout  # everything else is there
    assert platform_beside(["run", "--help"], site).returncode == 0
    enabled = platform_beside(["run", "--plugins", "broken", "--help"], site)
    assert enabled.returncode == 2 and enabled.stderr.strip().splitlines()[-1] == (
        "platform run: error: plugin 'broken' cannot be enabled: importing broken_plugin failed: "
        "ModuleNotFoundError: No module named 'a_module_nobody_installed'")


def test_two_plugins_providing_one_name_are_both_named_and_neither_is_used(tmp_path):
    install(tmp_path, "left", TWIN.format(who="left"))
    site = install(tmp_path, "right", TWIN.format(who="right"))
    listed = platform_beside(["plugins"], site)
    assert listed.returncode == 0, listed.stderr
    assert "conflict: task 'twin' is provided by left and by right; neither is used" in listed.stdout
    run = platform_beside(["run", "--tasks", "twin", "--checkpoint", "tiny"], site)
    assert run.returncode == 2 and run.stderr.strip().splitlines()[-1] == (
        "platform run: error: --tasks: task 'twin' is registered twice: by plugin 'left' and by plugin 'right'; "
        "uninstall or disable one of them")


def test_a_plugin_with_no_hook_is_warned_about_and_one_with_an_unknown_hook_is_broken(tmp_path):
    install(tmp_path, "idle", "NAME = 'idle'\n")
    site = install(tmp_path, "old", "from core.api import hookimpl\n\n@hookimpl\ndef platform_register_tasks(register):\n"
                                    "    pass\n")
    listed = platform_beside(["plugins"], site)
    assert listed.returncode == 0, listed.stderr
    assert "plugin 'idle' (idle_plugin) implements no platform hook: is @hookimpl missing?" in listed.stderr
    assert ("old  [broken]  it implements platform_register_tasks, which is no platform hook (see docs/hooks.md)"
            in listed.stdout)
