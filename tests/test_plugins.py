"""The plugin registry: one plugin's failure is data about that plugin, never the others' problem."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import sghost
from sgframework import Resource
from sghost.context import ResourceContext
from sghost.host.broker import MosquittoBroker
from sghost.plugins import (
    AUTOLOAD_DISABLE_ENV,
    EXTRA_PLUGINS_ENV,
    PluginInfo,
    PluginRegistry,
    UnknownResourceType,
    format_plugins,
)
from sghost.testing import Recorder

PLUGIN_DIR = Path(__file__).parent / "plugins"
FAKE_MODULES = ("sghost_fake_good", "sghost_fake_bad")


def noop_setup(context: ResourceContext) -> None:
    """A setup that sets up nothing."""


class Offers:
    """A plugin object that offers the given type names."""

    def __init__(self, *names: str) -> None:
        self.names = names

    @sghost.hookimpl
    def register_resource_types(self, register: Any) -> None:
        for name in self.names:
            register(name, noop_setup)


class Raises:
    """A plugin whose hook registers one type, then raises."""

    @sghost.hookimpl
    def register_resource_types(self, register: Any) -> None:
        register("half", noop_setup)
        raise RuntimeError("no configuration file for the sign")


class Misspelled:
    """A plugin whose hook name has a typo: pluggy would silently never call it."""

    @sghost.hookimpl
    def register_resource_type(self, register: Any) -> None:
        register("never", noop_setup)


class Forgot:
    """A plugin whose author forgot ``@sghost.hookimpl``."""

    def register_resource_types(self, register: Any) -> None:
        register("never", noop_setup)


class WrongArgument:
    """A plugin whose hookimpl asks for an argument the hook does not have."""

    @sghost.hookimpl
    def register_resource_types(self, registr: Any) -> None:
        registr("never", noop_setup)


class CallsRegister:
    """A plugin that calls ``register`` with the given arguments, optionally swallowing the error."""

    def __init__(self, *args: Any, swallow: bool = False, **kwargs: Any) -> None:
        self.args, self.kwargs, self.swallow = args, kwargs, swallow

    @sghost.hookimpl
    def register_resource_types(self, register: Any) -> None:
        try:
            register(*self.args, **self.kwargs)
        except (TypeError, ValueError):
            if not self.swallow:
                raise


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No plugin environment variables from outside; test plugin modules importable; no leftovers."""
    monkeypatch.delenv(AUTOLOAD_DISABLE_ENV, raising=False)
    monkeypatch.delenv(EXTRA_PLUGINS_ENV, raising=False)
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    yield
    for name in ("sghost_broken_plugin", *FAKE_MODULES):
        sys.modules.pop(name, None)


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution ``sghost-fake`` 1.2.3 with a good and a failing entry point."""
    dist_info = tmp_path / "sghost_fake-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: sghost-fake\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text(
        "[sghost]\nfakegood = sghost_fake_good\nfakebad = sghost_fake_bad\n"
    )
    (tmp_path / "sghost_fake_good.py").write_text(
        textwrap.dedent(
            """
            import sghost

            def setup(context):
                pass

            @sghost.hookimpl
            def register_resource_types(register):
                register("fakegood", setup, description="works")
            """
        )
    )
    (tmp_path / "sghost_fake_bad.py").write_text('raise OSError("no /dev/ttyUSB0 at import time")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def by_name(registry: PluginRegistry) -> dict[str, PluginInfo]:
    return {info.name: info for info in registry.plugins}


# ------------------------------------------------------------------ loading


def test_registered_plugin_offers_its_types() -> None:
    import sghost_test_plugins

    registry = PluginRegistry()
    info = registry.register(sghost_test_plugins, "testplugins")
    assert info.error is None
    assert info.source == "registered"
    assert info.types == ["echoer", "crasher", "exiter", "hanger", "hog", "counter", "flooder",
                          "threadfail"]
    kind = registry.get("echoer")
    assert kind.plugin == "testplugins"
    assert kind.setup is sghost_test_plugins.setup_echoer
    assert kind.description == "command ping, echoed retained"
    assert set(registry.types) == set(info.types)


def test_failed_imports_are_reported_and_the_others_load(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(EXTRA_PLUGINS_ENV, "nonexistent_plugin, sghost_broken_plugin,sghost_test_plugins,")
    registry = PluginRegistry()
    with caplog.at_level(logging.ERROR, logger="sghost.plugins"):
        registry.load(autoload=False)
    infos = by_name(registry)
    assert list(infos) == ["nonexistent_plugin", "sghost_broken_plugin", "sghost_test_plugins"]
    assert infos["nonexistent_plugin"].error == "ModuleNotFoundError: No module named 'nonexistent_plugin'"
    assert infos["sghost_broken_plugin"].error == "ImportError: missing dependency: serial"
    assert infos["sghost_broken_plugin"].source == "SGHOST_PLUGINS"
    assert "raise ImportError" in (infos["sghost_broken_plugin"].traceback or "")
    assert infos["sghost_test_plugins"].error is None
    assert "echoer" in registry.types
    assert (
        'Plugin "sghost_broken_plugin" (SGHOST_PLUGINS) failed to load: ImportError: missing dependency: serial'
        in caplog.messages
    )


def test_failing_entry_point_is_reported_with_its_distribution(fake_distribution: Path) -> None:
    registry = PluginRegistry()
    registry.load(autoload=True)
    infos = by_name(registry)
    bad, good = infos["fakebad"], infos["fakegood"]
    assert bad.error == "OSError: no /dev/ttyUSB0 at import time"
    assert bad.source == "entry point sghost: sghost_fake_bad"
    assert (bad.distribution, bad.version) == ("sghost-fake", "1.2.3")
    assert bad.types == []
    assert good.error is None and good.types == ["fakegood"]
    assert registry.get("fakegood").plugin == "fakegood"
    assert registry.get("taxisign").plugin == "taxisign"  # the installed example plugin is unaffected
    table = format_plugins(registry)
    assert "error: OSError: no /dev/ttyUSB0 at import time" in table
    assert "sghost-fake 1.2.3" in table


def test_duplicate_type_name_is_an_error_of_the_second_plugin() -> None:
    registry = PluginRegistry()
    first = registry.register(Offers("sign", "lamp"), "first")
    second = registry.register(Offers("horn", "sign"), "second")
    assert first.error is None
    assert second.error == 'ValueError: resource type "sign" is already registered by plugin "first"'
    assert second.types == []
    assert registry.get("sign").plugin == "first"
    assert "horn" not in registry.types  # a failed plugin offers none of its types
    assert registry.register(Offers("horn"), "third").error is None


def test_hook_that_raises_is_reported_and_leaves_no_half_registration() -> None:
    registry = PluginRegistry()
    failed = registry.register(Raises(), "raiser")
    assert failed.error == "RuntimeError: no configuration file for the sign"
    assert "half" not in registry.types
    assert registry.register(Offers("fine"), "other").types == ["fine"]
    assert registry.get("fine").plugin == "other"


def test_misspelled_hook_is_caught_at_load() -> None:
    registry = PluginRegistry()
    info = registry.register(Misspelled(), "typo")
    assert info.error == (
        'PluginValidationError: unknown hook "register_resource_type" (did you mean "register_resource_types"?)'
    )
    assert registry.register(Offers("after"), "after").error is None  # check_pending is clean again


def test_hookimpl_with_unknown_argument_is_reported() -> None:
    registry = PluginRegistry()
    info = registry.register(WrongArgument(), "wrongarg")
    assert info.error is not None and info.error.startswith("PluginValidationError:")
    assert "registr" in info.error
    assert registry.register(Offers("after"), "after").error is None


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("", noop_setup), {}, "ValueError: the resource type name must not be empty"),
        (("a/b", noop_setup), {}, "ValueError: the resource type name 'a/b' contains '/'"),
        (("a+b", noop_setup), {}, "contains '+'"),
        (("a#", noop_setup), {}, "contains '#'"),
        (("a\0", noop_setup), {}, "contains '\\x00'"),
        ((42, noop_setup), {}, "ValueError: the resource type name must be a string, not int"),
        (("sign", "setup"), {}, 'TypeError: the setup of resource type "sign" must be callable, not str'),
        (("sign", noop_setup), {"check_settings": 1}, "TypeError: check_settings of resource type"),
        (("sign", noop_setup), {"description": None}, "TypeError: the description of resource type"),
    ],
)
def test_bad_register_calls_fail_the_plugin(args: tuple[Any, ...], kwargs: dict[str, Any], expected: str) -> None:
    for swallow in (False, True):  # catching the exception does not make the plugin half-loaded
        registry = PluginRegistry()
        info = registry.register(CallsRegister(*args, swallow=swallow, **kwargs), "bad")
        assert info.error is not None and expected in info.error
        assert registry.types == {}


def test_same_type_twice_from_one_plugin() -> None:
    info = PluginRegistry().register(Offers("sign", "sign"), "twice")
    assert info.error == 'ValueError: resource type "sign" is registered twice by this plugin'


def test_plugin_without_types_is_loaded_with_a_hint(caplog: pytest.LogCaptureFixture) -> None:
    registry = PluginRegistry()
    info = registry.register(Forgot(), "forgot")
    assert (info.error, info.types) == (None, [])
    assert "forgot" in format_plugins(registry)
    assert "ok, but no resource types (no @sghost.hookimpl" in format_plugins(registry)
    assert 'Plugin "forgot" offers no resource types' in caplog.text


def test_plugin_name_already_taken() -> None:
    registry = PluginRegistry()
    registry.register(Offers("a"), "same")
    info = registry.register(Offers("b"), "same")
    assert info.error == 'ValueError: a plugin named "same" is already registered'
    assert set(registry.types) == {"a"}


def test_autoload_off_skips_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_DISABLE_ENV, "1")
    registry = PluginRegistry()
    registry.load()
    assert registry.plugins == []
    assert "taxisign" not in registry.types
    reason = registry.missing_type_reason("taxisign")
    assert "autoload is off" in reason
    assert "No resource plugins installed" in format_plugins(registry)

    forced = PluginRegistry()
    forced.load(autoload=True)  # the argument wins over the environment
    assert "taxisign" in forced.types


def test_autoload_on_by_default_and_load_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_DISABLE_ENV, "0")
    monkeypatch.setenv(EXTRA_PLUGINS_ENV, "sghost_taxisign")  # already loaded as an entry point: no duplicate
    registry = PluginRegistry()
    registry.load()
    registry.load()
    assert [info.name for info in registry.plugins].count("taxisign") == 1
    assert all(info.error is None for info in registry.plugins), registry.plugins
    assert "sghost_taxisign" not in by_name(registry)


# ------------------------------------------------------- reasons and output


def test_missing_type_reason_prefers_the_plugin_named_like_the_type(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = PluginRegistry()
    registry.register(Offers("lamp", "sign"), "lamps")
    registry.register(CallsRegister("x/y", noop_setup), "slashes")
    monkeypatch.setenv(EXTRA_PLUGINS_ENV, "sghost_broken_plugin")
    registry.load(autoload=False)

    assert registry.missing_type_reason("sign") == ""
    assert registry.missing_type_reason("sghost_broken_plugin") == (
        'no installed plugin offers resource type "sghost_broken_plugin"; installed types: lamp, sign; '
        'plugin "sghost_broken_plugin" failed to load: ImportError: missing dependency: serial; '
        "plugin autoload is off (SGHOST_DISABLE_PLUGIN_AUTOLOAD is set)"
    )
    other = registry.missing_type_reason("lamb")
    assert other.startswith('no installed plugin offers resource type "lamb"; installed types: lamp, sign; ')
    assert 'plugin "slashes" failed to load: ValueError:' in other
    assert 'plugin "sghost_broken_plugin" failed to load' in other
    assert 'did you mean "lamp"?' in other


def test_get_raises_key_error_with_the_reason() -> None:
    registry = PluginRegistry()
    registry.register(Offers("sign"), "signs")
    with pytest.raises(KeyError) as caught:
        registry.get("taxi")
    assert isinstance(caught.value, UnknownResourceType)
    assert str(caught.value) == 'no installed plugin offers resource type "taxi"; installed types: sign'


def test_check_settings() -> None:
    import sghost_test_plugins

    def explodes(settings: Any) -> list[str]:
        raise ZeroDivisionError("division by zero")

    class Checked:
        @sghost.hookimpl
        def register_resource_types(self, register: Any) -> None:
            register("explodes", noop_setup, check_settings=explodes)
            register("unchecked", noop_setup)
            register("wrongreturn", noop_setup, check_settings=lambda settings: "after: bad")

    registry = PluginRegistry()
    registry.register(sghost_test_plugins, "testplugins")
    registry.register(Checked(), "checked")
    assert registry.check_settings("e", "exiter", {"after": 1, "code": 2}) == []
    assert registry.check_settings("e", "exiter", {"after": "soon"}) == ["after: expected a number of seconds"]
    assert registry.check_settings("x", "explodes", {}) == [
        'the settings check of resource type "explodes" failed: ZeroDivisionError: division by zero'
    ]
    assert registry.check_settings("u", "unchecked", {"anything": 1}) == []
    assert registry.check_settings("w", "wrongreturn", {}) == [
        'the settings check of resource type "wrongreturn" returned str, not a list of strings'
    ]
    (problem,) = registry.check_settings("n", "nosuchtype", {})
    assert problem.startswith('no installed plugin offers resource type "nosuchtype"')


def test_format_plugins_shows_distribution_version_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXTRA_PLUGINS_ENV, "sghost_broken_plugin")
    registry = PluginRegistry()
    registry.load(autoload=True)
    table = format_plugins(registry)
    lines = table.splitlines()
    assert lines[0].split() == ["PLUGIN", "SOURCE", "TYPES", "DISTRIBUTION", "STATUS"]
    (taxisign,) = [line for line in lines if line.startswith("taxisign ")]
    assert "entry point sghost: sghost_taxisign" in taxisign
    assert "sghost-taxisign 0.1.0" in taxisign
    assert taxisign.endswith("ok")
    (broken,) = [line for line in lines if line.startswith("sghost_broken_plugin ")]
    assert broken.endswith("error: ImportError: missing dependency: serial")
    assert "plugin(s) failed to load" in lines[-1]


def test_plugins_module_is_import_light() -> None:
    """``sghost plugins`` and ``sghost check`` must not pay for paho or sgframework."""
    code = "import sys, sghost.plugins; print(sorted(m for m in sys.modules if m.startswith(('paho', 'sgframework'))))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


# -------------------------------------- the test plugins the supervisor tests use


def run_timers(context: ResourceContext, rounds: int) -> None:
    """Run ``rounds`` turns of the resource's main loop: wait until the next timer is due, then run it."""
    for _ in range(rounds):
        delay = context.run_due_timers()
        assert delay is not None, f"{context.name} has no timer"
        time.sleep(delay)  # sleep-ok: the main loop's idle wait until the next timer is due
        context.run_due_timers()


@pytest.fixture
def test_types() -> PluginRegistry:
    import sghost_test_plugins

    registry = PluginRegistry()
    assert registry.register(sghost_test_plugins, "sghost_test_plugins").error is None
    return registry


def test_echoer_and_counter(
    test_types: PluginRegistry, mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder],
    start_resource: Callable[..., ResourceContext],
) -> None:
    recorder = mqtt_recorder(mosquitto)
    start_resource(test_types.get("echoer").setup, mosquitto, name="echoer")
    counter = start_resource(test_types.get("counter").setup, mosquitto, {"interval": 0.05}, "counter")
    recorder.wait_for("data/echoer/ping", "False")
    recorder.publish("command/echoer/ping", "hello")
    recorder.wait_for("data/echoer/ping", "hello")
    recorder.wait_for("dataavailable/counter/count", "True")
    run_timers(counter, 2)
    recorder.wait_for("data/counter/count", "1")
    recorder.wait_for("data/counter/count", "2")


def test_crasher_raises_at_setup(test_types: PluginRegistry) -> None:
    context = ResourceContext("crasher", {}, Resource("crasher", "127.0.0.1"))
    with pytest.raises(RuntimeError, match="boom at start"):
        test_types.get("crasher").setup(context)


def test_exiter_exits_with_its_code() -> None:
    """Run in a child process: ``os._exit`` would end pytest."""
    code = textwrap.dedent(
        """
        import sys, time
        sys.path.insert(0, sys.argv[1])
        import sghost_test_plugins
        from sghost.context import ResourceContext
        from sgframework import Resource
        context = ResourceContext("exiter", {"after": 0.1, "code": 7}, Resource("exiter", "127.0.0.1"))
        sghost_test_plugins.setup_exiter(context)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            context.run_due_timers()
            time.sleep(0.01)  # sleep-ok: the main loop's idle wait between timer checks
        """
    )
    result = subprocess.run([sys.executable, "-c", code, str(PLUGIN_DIR)], capture_output=True, timeout=10)
    assert result.returncode == 7, result.stderr  # the loop alone would end with 0: the timer ended it


def test_hog_and_hanger_register(test_types: PluginRegistry) -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    hog = ResourceContext("hog", {"mb": 40}, Resource("hog", "127.0.0.1"))
    test_types.get("hog").setup(hog)
    run_timers(hog, 3)  # three ticks, but the limit of 40 MB stops it at two chunks of 20 MB
    grown_mb = (process.memory_info().rss - before) / 2**20
    assert 35 < grown_mb < 55
    hanger = ResourceContext("hanger", {}, Resource("hanger", "127.0.0.1"))
    test_types.get("hanger").setup(hanger)
    assert hanger.resource.announced_topics == ["commandavailable/hanger/hang", "dataavailable/hanger/hang"]
