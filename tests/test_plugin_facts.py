"""What docs/plugins.md promises a plugin author, checked against a real broker and the real manifest reader."""

from __future__ import annotations

import datetime
import threading
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import sghost
from sgframework import Resource
from sghost.config.manifest import load_manifest
from sghost.host.broker import MosquittoBroker
from sghost.plugins import PluginRegistry
from sghost.testing import Recorder


class Commands:
    """A resource with command ``go`` whose callback records each payload it is given."""

    def __init__(self, broker: MosquittoBroker, name: str) -> None:
        self.payloads: list[Any] = []
        self.changed = threading.Condition()
        self.resource = Resource(name, broker.host, broker.port)
        self.resource.register_incoming_command("go", self.on_go, echo=False)
        self.resource.start(use_threaded_networking=True)

    def on_go(self, resource: Any, messagetype: str, servicename: str, signalname: str, payload: Any) -> None:
        with self.changed:
            self.payloads.append(payload)
            self.changed.notify_all()

    def wait_count(self, count: int, timeout: float = 5.0) -> list[Any]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.payloads) >= count, timeout)
            return list(self.payloads)


@pytest.fixture
def commands(mosquitto: MosquittoBroker) -> Iterator[Callable[[str], Commands]]:
    made: list[Commands] = []

    def make(name: str) -> Commands:
        made.append(Commands(mosquitto, name))
        return made[-1]

    yield make
    for item in made:
        if item.resource.mqttclient is not None:  # not stopped by the test already
            item.resource.stop()


def test_a_callback_gets_a_stripped_str_and_never_a_non_utf8_payload(
    commands: Callable[[str], Commands], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    resource = commands("facts1")
    recorder = mqtt_recorder(mosquitto)
    recorder.wait_for("commandavailable/facts1/go", "True")
    recorder.publish("command/facts1/go", b"\xff\xfe not utf-8")
    recorder.publish("command/facts1/go", " True\n")
    recorder.publish("command/facts1/go", "")
    assert resource.wait_count(2) == ["True", ""]  # in order: the first never arrived


def test_a_retained_command_reaches_the_callback_at_every_start(
    commands: Callable[[str], Commands], mosquitto: MosquittoBroker, mqtt_recorder: Callable[..., Recorder]
) -> None:
    recorder = mqtt_recorder(mosquitto)
    recorder.publish("command/facts2/go", "hang", retain=True)
    try:
        first = commands("facts2")
        assert first.wait_count(1) == ["hang"]
        first.resource.stop()
        again = commands("facts2")
        assert again.wait_count(1) == ["hang"]
    finally:
        recorder.publish("command/facts2/go", "", retain=True)  # how the docs say to clear it


def test_check_settings_gets_the_toml_types(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text(
        '[resources.probe]\ntype = "probe"\n[resources.probe.settings]\n'
        'count = 5\nratio = 5.0\non = true\nname = "x"\nwhen = 2026-12-01T10:00:00Z\nday = 2026-12-01\n'
        'at = 10:00:00\nlist = [1, "a"]\n[resources.probe.settings.inner]\nkey = 1\n'
    )
    seen: list[Mapping[str, Any]] = []

    def check(name: str, type_name: str, settings: Mapping[str, Any]) -> list[str]:
        seen.append(settings)
        return []

    load_manifest(str(manifest), known_types={"probe"}, check_settings=check)
    (settings,) = seen
    assert type(settings) is dict
    assert {key: type(value) for key, value in settings.items()} == {
        "count": int, "ratio": float, "on": bool, "name": str, "when": datetime.datetime, "day": datetime.date,
        "at": datetime.time, "list": list, "inner": dict,
    }


def test_one_module_behind_two_entry_points_fails_the_second() -> None:
    module = types.ModuleType("two_types")

    @sghost.hookimpl
    def register_resource_types(register: Any) -> None:
        register("thermostat", lambda context: None)
        register("humidity", lambda context: None)

    module.register_resource_types = register_resource_types  # type: ignore[attr-defined]
    registry = PluginRegistry()
    assert registry.register(module, "climate").types == ["thermostat", "humidity"]
    second = registry.register(module, "humidity")
    assert second.error == 'ValueError: this plugin is already registered as "climate"'
