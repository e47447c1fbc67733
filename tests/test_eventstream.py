"""The host's event stream: every subscriber sees every event, in the order they happened."""

from __future__ import annotations

import logging

import pytest

from sghost.host.eventstream import Event, EventStream, ResourceForgotten, ResourceStateChanged


def test_an_event_published_during_delivery_waits_until_everyone_saw_the_earlier_one() -> None:
    stream = EventStream()
    seen: list[tuple[str, Event]] = []

    def first(event: Event) -> None:
        seen.append(("first", event))
        if isinstance(event, ResourceStateChanged):
            stream.publish(ResourceForgotten(event.name))

    stream.subscribe(first)
    stream.subscribe(lambda event: seen.append(("second", event)))
    changed = ResourceStateChanged("taxisign", {"state": "stopped"})
    stream.publish(changed)
    forgotten = ResourceForgotten("taxisign")
    assert seen == [("first", changed), ("second", changed), ("first", forgotten), ("second", forgotten)]


def test_a_subscriber_that_raises_is_logged_and_the_others_still_get_the_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = EventStream()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("broken reporter")

    stream.subscribe(broken)
    stream.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="sghost"):
        stream.publish(ResourceForgotten("climate"))
        stream.publish(ResourceForgotten("gps"))
    assert seen == [ResourceForgotten("climate"), ResourceForgotten("gps")]
    assert "broken failed on ResourceForgotten(name='climate')" in caplog.text
    assert "broken reporter" in caplog.text


def test_an_unsubscribed_listener_hears_nothing_more() -> None:
    stream = EventStream()
    seen: list[Event] = []
    unsubscribe = stream.subscribe(seen.append)
    stream.publish(ResourceForgotten("a"))
    unsubscribe()
    stream.publish(ResourceForgotten("b"))
    assert seen == [ResourceForgotten("a")]


def test_every_event_has_a_kind_and_a_json_form() -> None:
    import json
    from pathlib import Path

    from sghost.config.manifest import HostConfig
    from sghost.host.eventstream import DesiredStateApplied, HostStopping, as_json

    changed = as_json(ResourceStateChanged("taxisign", {"state": "running", "pid": 42}))
    assert changed == {
        "kind": "resource_state_changed", "name": "taxisign", "snapshot": {"state": "running", "pid": 42},
        "retiring": False,
    }
    applied = as_json(DesiredStateApplied(HostConfig(path=Path("/etc/sghost/hostconfig.toml")), ("a",), (), (), True))
    assert applied == {
        "kind": "desired_state_applied", "manifest": "/etc/sghost/hostconfig.toml", "added": ["a"], "removed": [],
        "changed": [], "initial": True,
    }
    assert json.loads(json.dumps(as_json(HostStopping()))) == {"kind": "host_stopping"}
