"""The one desired-state path (start, reload, deployments): apply a configuration by difference.

Resources here are disabled, so applying needs no process: what is checked is
the table, the result and the events a deployment or a dashboard would follow.
The paths that start processes are covered through the running host in test_reload.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sghost.config.manifest import HostConfig, ManifestError, ResourceConfig
from sghost.host.brokerlink import BrokerLink
from sghost.host.desiredstate import DesiredState, load
from sghost.host.eventstream import DesiredStateApplied, Event, EventStream, ResourceForgotten, ResourceStateChanged
from sghost.host.loop import EventLoop
from sghost.host.table import ResourceTable
from sghost.host.zygotelink import ZygoteLink
from sghost.plugins import PluginRegistry


def disabled(name: str, **settings: object) -> ResourceConfig:
    return ResourceConfig(name, "echoer", enabled=False, table={"type": "echoer", "enabled": False, **settings})


def desired(*resources: ResourceConfig) -> HostConfig:
    return HostConfig(path=Path("hostconfig.toml"), resources={resource.name: resource for resource in resources})


class Host:
    """The parts apply() works on, wired as the supervisor wires them (no zygote: nothing is started)."""

    def __init__(self, first: HostConfig) -> None:
        self.stream = EventStream()
        self.events: list[Event] = []
        self.stream.subscribe(self.events.append)
        loop = EventLoop()
        brokers = BrokerLink(lambda: self.desired.config)
        zygote = ZygoteLink(loop, on_exit=lambda pid: None, on_lost=lambda: None)
        self.table = ResourceTable(
            lambda: self.desired.config, loop, zygote, brokers, self.stream,
            broker_reachable=lambda: False, stopping=lambda: False,
        )
        self.meta_restarts: list[bool] = []
        self.desired = DesiredState(
            first, self.table, brokers, self.stream,
            restart_meta_resource=self.meta_restarts.append, reopen_file_logs=lambda: None,
            remote_control_changed=lambda: None,
        )


def test_start_is_the_first_desired_state_applied_onto_an_empty_table() -> None:
    first = desired(disabled("a"), disabled("b"))
    host = Host(first)
    result = host.desired.apply(first)
    assert (result.added, result.removed, result.changed, result.untouched) == (("a", "b"), (), (), ())
    assert list(host.table.watchers) == ["a", "b"]
    assert [w.state for w in host.table.watchers.values()] == ["stopped", "stopped"]
    applied = [event for event in host.events if isinstance(event, DesiredStateApplied)]
    assert applied == [DesiredStateApplied(first, ("a", "b"), (), (), initial=True)]
    assert host.meta_restarts == []


def test_a_new_desired_state_adds_removes_and_restarts_only_what_differs() -> None:
    host = Host(desired(disabled("a"), disabled("b"), disabled("c")))
    host.desired.apply(host.desired.config)
    host.events.clear()
    new = desired(disabled("b"), disabled("c", settings={"x": 1}), disabled("d"))  # c's table differs
    result = host.desired.apply(new)
    assert result.added == ("d",)
    assert result.removed == ("a",)
    assert result.changed == ("c",)
    assert result.untouched == ("b",)
    assert result.message == "reloaded hostconfig.toml: 1 added, 1 removed, 1 restarted, 1 untouched"
    assert list(host.table.watchers) == ["b", "c", "d"]
    assert ResourceForgotten("a") in host.events
    assert [e.name for e in host.events if isinstance(e, ResourceStateChanged)] == ["d"]  # c: stopped before and after
    assert host.events[-1] == DesiredStateApplied(host.desired.config, ("d",), ("a",), ("c",), initial=False)
    assert list(host.desired.config.resources) == ["b", "c", "d"]


def test_a_change_of_remote_control_reconnects_the_meta_resource_and_says_so() -> None:
    first = desired(disabled("a"))
    host = Host(first)
    host.desired.apply(first)
    result = host.desired.apply(dataclasses.replace(first, remote_control=True))
    assert result.meta_resource_restarted
    assert host.meta_restarts == [False]  # turned on: no commands to withdraw
    assert result.message.endswith("; sghost reconnects with the new settings")
    result = host.desired.apply(first)
    assert host.meta_restarts == [False, True]  # turned off: the announced commands are withdrawn


def test_loading_is_a_step_of_its_own_and_names_every_problem(tmp_path: Path) -> None:
    manifest = tmp_path / "hostconfig.toml"
    manifest.write_text('[resources.a]\ntype = "echoer"\nrestrat = "always"\n')
    with pytest.raises(ManifestError) as caught:
        load(manifest, PluginRegistry())
    assert f'{manifest}: resources.a.restrat: unknown key; did you mean "restart"?' in str(caught.value)


def test_a_deployment_can_restart_resources_whose_table_did_not_change() -> None:
    first = desired(disabled("a"), disabled("b"))
    host = Host(first)
    host.desired.apply(first)
    result = host.desired.apply(first, restart=["b", "not-there"])
    assert (result.changed, result.untouched) == (("b",), ("a",))
