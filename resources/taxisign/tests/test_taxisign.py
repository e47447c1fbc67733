"""The taxisign resource against a real broker, and its discovery through its entry point."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from sghost.context import ResourceContext
from sghost.plugins import PluginRegistry, format_plugins
from sghost.testing import MosquittoBroker, Recorder

import sghost_taxisign


@pytest.fixture
def taxisign(mosquitto: MosquittoBroker, start_resource: Callable[..., ResourceContext]) -> ResourceContext:
    """A started taxisign resource named ``taxisign``, set up as sghost would (sghost.testing)."""
    return start_resource(sghost_taxisign.setup, mosquitto, name="taxisign")


def test_state_command_is_echoed_retained_and_logged(
    taxisign: ResourceContext,
    mosquitto: MosquittoBroker,
    mqtt_recorder: Callable[..., Recorder],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="taxisign")
    recorder = mqtt_recorder(mosquitto)
    recorder.wait_for("commandavailable/taxisign/state", "True", retain=True)
    recorder.wait_for("data/taxisign/state", "False", retain=True)  # the default value

    recorder.publish("command/taxisign/state", "True")
    recorder.wait_for("data/taxisign/state", "True")
    assert "Turning on my taxi sign." in caplog.messages

    recorder.publish("command/taxisign/state", "False")
    recorder.wait_for("data/taxisign/state", "False", after=recorder.on("data/taxisign/state")[-1].at)
    assert "Turning off my taxi sign." in caplog.messages

    late = mqtt_recorder(mosquitto, "data/taxisign/state")  # a new subscriber sees the retained state
    assert late.wait_for("data/taxisign/state", retain=True).payload == "False"


def test_entry_point_is_discovered() -> None:
    """Needs ``pip install -e resources/taxisign`` (``make install``)."""
    registry = PluginRegistry()
    registry.load(autoload=True)
    kind = registry.get("taxisign")
    assert kind.setup is sghost_taxisign.setup
    assert kind.plugin == "taxisign"
    (info,) = [info for info in registry.plugins if info.name == "taxisign"]
    assert info.error is None
    assert info.source == "entry point sghost: sghost_taxisign"
    assert info.distribution == "sghost-taxisign"
    assert info.version == "0.1.0"
    assert "sghost-taxisign 0.1.0" in format_plugins(registry)
