"""The package's architecture: layers that import only downward, plugins kept apart from the core, and no import
cycle anywhere, function-level and TYPE_CHECKING imports included.

The design card's folders (stages/, plugins/, templates/, lab/) are parts of the one package through setuptools'
package-dir mapping, so the check runs on the package as the wheel lays it out: a copy, built from pyproject.toml.
"""

import runpy
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import grimp
import pytest

from tests.labproject import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LAYERS = SimpleNamespace(**runpy.run_path(str(REPO / "scripts" / "check_layers.py")))  # the lint step's own code


@pytest.fixture(scope="module")
def installed_layout(tmp_path_factory) -> Path:
    """The proxpipe package laid out as the wheel installs it."""
    return LAYERS.lay_out(tmp_path_factory.mktemp("layout"))


def test_every_layer_and_plugin_contract_is_kept(installed_layout):
    result = LAYERS.check(installed_layout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_there_is_no_import_cycle(installed_layout, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_layout))
    for name in [m for m in sys.modules if m == "proxpipe" or m.startswith("proxpipe.")]:
        monkeypatch.delitem(sys.modules, name)
    graph = grimp.build_graph("proxpipe", cache_dir=None)
    cycles = [sorted(group) for group in _strongly_connected(graph) if len(group) > 1]
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_wheel_layout_has_every_package_of_the_source_tree():
    setuptools = PYPROJECT["tool"]["setuptools"]
    mapped = {REPO / folder for folder in setuptools["package-dir"].values()}
    listed = set(setuptools["packages"])
    for folder in [REPO / "proxpipe", *mapped]:
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            base = next((p for p, d in setuptools["package-dir"].items() if REPO / d == folder), "proxpipe")
            package = ".".join([base, *relative.parts])
            assert package in listed, f"{package} ({init.parent}) is missing from [tool.setuptools] packages"


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm over the module graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups
