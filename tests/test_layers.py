"""The package's layers: data flows one way, so no module imports from a layer above its own.

The order (docs/architecture.md): the MQTT library -> the plugin API -> manifest and
validated config (with the reload plan, deployments' documents) -> processes and their
events -> health and integrations (the meta-resource, the web page) -> the host that runs them -> the command line.
A ``"module:function"`` string (the zygote's RUNNERS) counts as an import of its module.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LAYERS = [
    ("sgframework",),
    ("sghost", "sghost.hookspecs", "sghost.context", "sghost.plugins", "sghost.suggest"),
    ("sghost.config", "sghost.deploy"),
    ("sghost.process",),
    ("sghost.health",),
    ("sghost.dashboard",),
    ("sghost.host",),
    ("sghost.cli", "sghost.testing", "sghost.__main__"),
]


def layer_of(module: str) -> int:
    """The layer of a dotted module name: the longest prefix listed wins."""
    best, best_length = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every first-party module the file imports (at any depth, TYPE_CHECKING blocks excepted)."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(child) for child in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and NAMED_FUNCTION.fullmatch(node.value):
            found.append((node.lineno, node.value.split(":")[0]))
    return [(line, name) for line, name in found if name.split(".")[0] in ("sghost", "sgframework")]


NAMED_FUNCTION = re.compile(r"(?:sghost|sgframework)(?:\.\w+)+:\w+")
"""A function named by a string, imported later (``host.supervisor.RUNNERS``)."""


SOURCES = sorted([*ROOT.joinpath("sghost").rglob("*.py"), *ROOT.joinpath("sgframework").rglob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    own = layer_of(module_name(path))
    assert own >= 0, f"{module_name(path)} belongs to no layer: add it to LAYERS"
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {name} (layer {layer_of(name)} > {own})"
        for line, name in imported_modules(path)
        if layer_of(name) > own
    ]
    assert not upward, "\n".join(upward)


def test_every_subpackage_is_a_layer() -> None:
    packages = {module_name(init) for init in ROOT.joinpath("sghost").rglob("__init__.py")}
    assert all(layer_of(package) >= 0 for package in packages), packages


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text("def f():\n    from sghost.cli.main import load_checked\n")
    names = [name for _line, name in imported_modules(source)]
    assert "sghost.cli.main.load_checked" in names
    assert layer_of("sghost.cli.main.load_checked") > layer_of("sghost.config.manifest")


def test_the_check_sees_a_function_named_by_a_string(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text('RUNNERS = {"resource": "sghost.cli.main:main"}\n')
    assert [name for _line, name in imported_modules(source)] == ["sghost.cli.main"]


def test_every_runner_names_a_function_of_a_lower_layer() -> None:
    from sghost.host.supervisor import RUNNERS

    for role, target in RUNNERS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), (role, target)
        assert layer_of(module) < layer_of("sghost.host.supervisor"), (role, target)


def _import_graph(package: str) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports (names resolved to the module that holds them)."""
    modules = {module_name(path): path for path in SOURCES if module_name(path).startswith(package)}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        graph[module] = set()
        for _line, name in imported_modules(path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    return graph


def test_no_import_circle_inside_sghost() -> None:
    graph = _import_graph("sghost")
    circles: list[str] = []

    def walk(module: str, path: list[str], done: set[str]) -> None:
        for imported in sorted(graph[module]):
            if imported in path:
                circles.append(" -> ".join([*path[path.index(imported):], imported]))
            elif imported not in done:
                done.add(imported)
                walk(imported, [*path, imported], done)

    for module in sorted(graph):
        walk(module, [module], {module})
    assert not circles, "\n".join(sorted(set(circles)))
