"""docs/plugins.md documents every hook, argument and context member, and its example works."""

from __future__ import annotations

import ast
import inspect
import io
import logging
import re
import tokenize
import tomllib
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from sgframework import Resource
from sghost import hookspecs
from sghost.context import ResourceContext
from sghost.host.broker import MosquittoBroker
from sghost.plugins import AUTOLOAD_DISABLE_ENV, EXTRA_PLUGINS_ENV, PluginRegistry, Register
from sghost.testing import Recorder

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"
TAXISIGN = ROOT / "resources" / "taxisign"
MAX_EXAMPLE_LINES = 15


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def has_heading(text: str, name: str) -> bool:
    """A heading whose first backticked name is ``name`` (``### `name` `` or ``### `name(args)` ``)."""
    return any(re.match(rf"`{re.escape(name)}(`|\()", heading) for heading in headings(text))


def is_backticked(text: str, name: str) -> bool:
    """``name`` appears as `name`, `name(...)` or as an argument inside a backticked signature."""
    for code in re.findall(r"`([^`\n]+)`", text):
        if re.fullmatch(rf"{re.escape(name)}(\(.*\))?", code.strip()):
            return True
        if re.search(rf"\(.*\b{re.escape(name)}\b.*\)", code):
            return True
    return False


def example(text: str, marker: str) -> str:
    """The fenced code block right after ``<!-- example: marker -->``."""
    match = re.search(rf"<!-- example: {re.escape(marker)} -->\n```\w*\n(.*?)\n```", text, re.DOTALL)
    assert match, f"docs/plugins.md has no code block marked <!-- example: {marker} -->"
    return match.group(1) + "\n"


def hookspec_functions() -> list[Callable[..., object]]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    found = [obj for _, obj in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(obj, marker)]
    assert found, "sghost/hookspecs.py declares no hooks?"
    return found


def public_context_members() -> set[str]:
    instance = ResourceContext("docs", {}, Resource("docs", "127.0.0.1"))
    names = {name for name in dir(ResourceContext) if not name.startswith("_")}
    names |= {name for name in vars(instance) if not name.startswith("_")}
    return names


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    tree = ast.parse(source)
    docstring_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                docstring_lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            continue
        if token.type == tokenize.ENDMARKER:
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstring_lines)


# ------------------------------------------------------------ completeness


@pytest.mark.parametrize("hook", hookspec_functions(), ids=lambda hook: hook.__name__)
def test_every_hook_and_argument_is_documented(doc: str, hook: Callable[..., object]) -> None:
    assert has_heading(doc, hook.__name__), f"docs/plugins.md needs a heading `{hook.__name__}(...)`"
    for argument in inspect.signature(hook).parameters:
        assert is_backticked(doc, argument), f"argument `{argument}` of hook {hook.__name__} is not documented"


def test_every_argument_of_register_is_documented(doc: str) -> None:
    for argument in inspect.signature(Register.__call__).parameters:
        if argument != "self":
            assert is_backticked(doc, argument), f"argument `{argument}` of register() is not documented"


@pytest.mark.parametrize("member", sorted(public_context_members()))
def test_every_public_context_member_is_documented(doc: str, member: str) -> None:
    assert is_backticked(doc, member), f"ResourceContext.{member} is not documented in docs/plugins.md"


@pytest.mark.parametrize("member", ["name", "settings", "resource", "logger", "stopping", "every", "run_in_thread",
                                    "on_stop"])
def test_plugin_facing_context_members_have_a_heading(doc: str, member: str) -> None:
    assert has_heading(doc, member), f"docs/plugins.md needs a heading for context.{member}"
    if callable(getattr(ResourceContext, member, None)):
        for argument in inspect.signature(getattr(ResourceContext, member)).parameters:
            if argument != "self":
                assert is_backticked(doc, argument), f"argument `{argument}` of context.{member}() is not documented"


def test_environment_variables_are_documented(doc: str) -> None:
    for variable in (AUTOLOAD_DISABLE_ENV, EXTRA_PLUGINS_ENV):
        assert has_heading(doc, variable), f"docs/plugins.md needs a heading for {variable}"


def test_checks_catch_a_missing_name() -> None:
    """The checks above are not vacuous."""
    text = "### `every(seconds, function)`\nUse `settings`.\n"
    assert has_heading(text, "every") and not has_heading(text, "settings")
    assert is_backticked(text, "seconds") and is_backticked(text, "settings")
    assert not is_backticked(text, "on_stop") and not is_backticked(text, "second")


# ------------------------------------------------------------ the example


def test_example_is_the_real_taxisign_plugin(doc: str) -> None:
    assert example(doc, "plugin") == (TAXISIGN / "sghost_taxisign" / "__init__.py").read_text(encoding="utf-8")


def test_example_is_at_most_15_lines_of_code(doc: str) -> None:
    lines = code_lines(example(doc, "plugin"))
    assert lines <= MAX_EXAMPLE_LINES, f"the example plugin has {lines} lines of code"
    assert f"{lines} lines of code" in doc  # the heading states the real count


def test_example_pyproject_declares_the_real_entry_point(doc: str) -> None:
    documented = tomllib.loads(example(doc, "pyproject"))
    real = tomllib.loads((TAXISIGN / "pyproject.toml").read_text(encoding="utf-8"))
    assert documented["project"]["entry-points"] == real["project"]["entry-points"] == {
        "sghost": {"taxisign": "sghost_taxisign"}
    }
    assert documented["project"]["name"] == real["project"]["name"]
    assert documented["build-system"] == real["build-system"]


def test_example_manifest_uses_the_type(doc: str) -> None:
    manifest = tomllib.loads(example(doc, "manifest"))
    assert {table["type"] for table in manifest["resources"].values()} == {"taxisign"}


def test_example_plugin_works(
    doc: str,
    mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = types.ModuleType("docs_example_plugin")
    exec(compile(example(doc, "plugin"), str(DOC), "exec"), module.__dict__)
    registry = PluginRegistry()
    info = registry.register(module, "docs-example")
    assert (info.error, info.types) == (None, ["taxisign"])

    resource = Resource("doctaxi", mosquitto.host, mosquitto.port)
    context = ResourceContext("doctaxi", {}, resource)
    registry.get("taxisign").setup(context)
    recorder = mqtt_recorder(mosquitto)
    caplog.set_level(logging.INFO, logger="doctaxi")
    resource.start(use_threaded_networking=True)
    try:
        recorder.wait_for("data/doctaxi/state", "False")
        recorder.publish("command/doctaxi/state", "True")
        echo = recorder.wait_for("data/doctaxi/state", "True")
        assert "Turning on my taxi sign." in caplog.messages
    finally:
        context.run_cleanups()
        resource.stop()
    late = mqtt_recorder(mosquitto, "data/doctaxi/state")
    assert late.wait_for("data/doctaxi/state", "True", retain=True, after=echo.at)
