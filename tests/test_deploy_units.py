"""The generations store and the deployment state machine, each transition without a broker or processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sghost.config.deploy import DeployConfig
from sghost.config.manifest import ManifestError, load_manifest
from sghost.deploy import document
from sghost.deploy.generations import GenerationError, GenerationStore, pip_command, recover, requirement_problems
from sghost.host import deployments as d


def test_store_numbers_switches_and_prunes(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path, keep=2)
    assert store.current() is None
    first = store.create("a", 0, None, None, state="successful")
    with pytest.raises(GenerationError):
        store.switch(first)  # not complete: never run
    first = store.update(first, complete=True)
    store.switch(first)
    numbers = [first.number]
    for text in ("b", "c"):
        generation = store.update(store.create(text, 1, "x", "{}"), complete=True)
        store.switch(generation)
        numbers.append(generation.number)
    assert numbers == [1, 2, 3]
    assert (tmp_path / "generations" / "current").read_text() == "3\n"
    assert store.prune() == [1]
    assert [g.number for g in store.generations()] == [2, 3]
    assert store.current().manifest_text() == "c"  # type: ignore[union-attr]
    assert store.previous(3).number == 2  # type: ignore[union-attr]
    assert not list((tmp_path / "generations").glob(".*.tmp"))


def test_an_incomplete_generation_is_never_current(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    good = store.update(store.create("a", 0, None, None), complete=True)
    store.switch(good)
    half = store.create("b", 1, "x", "{}", ["p==1 --hash=sha256:00"])
    (tmp_path / "generations" / "current").write_text(f"{half.number}\n")  # as if a crash left it pointing there
    assert store.current().number == good.number  # type: ignore[union-attr]


def test_recover_reports_interrupted_install_and_resumes_an_applied_one(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    first = store.update(store.create("a", 0, None, None, state="successful"), complete=True)
    store.switch(first)
    installing = store.create("b", 5, "id5", "{}", ["p==1 --hash=sha256:00"])
    notes, resume = recover(store)
    assert resume is None
    assert [(g.number, state) for g, state, _ in notes] == [(installing.number, d.FAILED)]
    assert "stopped while installing" in notes[0][2] and "generation 1 runs" in notes[0][2]
    assert store.get(installing.number) is None  # a half-installed set is removed

    applied = store.update(store.create("c", 6, "id6", "{}", state=d.APPLYING), complete=True)
    store.switch(applied)
    notes, resume = recover(store)
    assert notes == [] and resume is not None and resume.number == applied.number


def test_requirements_must_be_pinned_and_hashed() -> None:
    assert requirement_problems(["sghost-x==0.2.0 --hash=sha256:" + "a" * 64]) == []
    problems = requirement_problems(["sghost-x>=0.2", "--index-url http://evil", "-e ."])
    assert len(problems) == 3 and "requirements[1]" in problems[1]


def test_pip_asks_only_the_configured_source(tmp_path: Path) -> None:
    store = GenerationStore(tmp_path)
    generation = store.create("a", 1, "x", "{}", ["p==1 --hash=sha256:00"])
    command = pip_command(generation, None, ("/wheels",))
    assert "--no-index" in command and "--require-hashes" in command and "--isolated" in command
    assert command[command.index("--find-links") + 1] == "/wheels"
    assert "--index-url" not in command
    command = pip_command(generation, "https://pypi.example/simple", ())
    assert command[command.index("--index-url") + 1] == "https://pypi.example/simple" and "--no-index" not in command


def test_transitions_allow_only_the_documented_paths() -> None:
    d.check_transition(d.RECEIVED, d.INSTALLING)
    d.check_transition(d.VERIFYING, d.ROLLING_BACK)
    for before, after in ((d.RECEIVED, d.SUCCESSFUL), (d.SUCCESSFUL, d.ROLLING_BACK), (d.REJECTED, d.INSTALLING)):
        with pytest.raises(d.TransitionError):
            d.check_transition(before, after)


# ---------------------------------------------------------------- a host without processes

@dataclass
class FakeHost:
    """The DeployHost protocol over plain data: resources' states are set by the test."""

    base: Path
    host_name: str = "gw1"
    published: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[int] = field(default_factory=list)
    applied: list[list[str]] = field(default_factory=list)
    health: dict[str, d.ResourceHealth] = field(default_factory=dict)
    timers: list[Callable[[], Any]] = field(default_factory=list)
    running: dict[str, Any] = field(default_factory=dict)
    now: float = 0.0

    def clock(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], Any]) -> None:
        self.timers.append(callback)

    def run_timers(self) -> None:
        timers, self.timers = self.timers, []
        for timer in timers:
            timer()

    def check_manifest(self, text: str, site: Path | None) -> d.CheckResult:
        path = self.base / "hostconfig.toml"
        try:
            return d.CheckResult(load_manifest(path, known_types=["echoer"], text=text))
        except ManifestError as error:
            return d.CheckResult(None, str(error))

    def apply_config(self, config: Any, site: Path | None) -> d.Applied:
        added = [n for n in config.resources if n not in self.running]
        removed = [n for n in self.running if n not in config.resources]
        self.running = dict(config.resources)
        self.applied.append(list(config.resources))
        for name in added:
            self.health[name] = d.ResourceHealth("starting", None, None)
        return d.Applied(added=added, changed=[], removed=removed)

    def resource_health(self, name: str) -> d.ResourceHealth | None:
        return self.health.get(name)

    def resource_names(self) -> list[str]:
        return list(self.running)

    def uplink_connected(self) -> bool:
        return True

    def publish_deployment(self, value: dict[str, Any]) -> None:
        self.published.append(value)

    def count_rejection(self, total: int) -> None:
        self.rejections.append(total)

    def states(self) -> list[str]:
        return [value["state"] for value in self.published]


def manifest_text(keyfile: Path, resources: str = "", deploy: str = "") -> str:
    return (f'[host]\nname = "gw1"\n[deploy]\nenabled = true\ntrusted_keys = ["{keyfile.name}"]\n'
            f"verify_seconds = 0.05\n{deploy}\n{resources}")


@pytest.fixture
def machine(tmp_path: Path) -> tuple[d.Deployments, FakeHost, Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    keyfile = tmp_path / "fleet.pub"
    keyfile.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    host = FakeHost(tmp_path)
    store = GenerationStore(tmp_path / "state")
    first = store.update(store.create(manifest_text(keyfile), 0, None, None, state="successful"), complete=True)
    store.switch(first)
    config = DeployConfig(enabled=True, trusted_keys=(keyfile,), verify_seconds=0.05)
    deployments = d.Deployments(host, store, config, [document.load_public_key(keyfile)], clock=host.clock)
    return deployments, host, key, keyfile


def signed(key: Ed25519PrivateKey, manifest: str, sequence: int = 10, host: str = "gw1") -> bytes:
    fields = {"host": host, "sequence": sequence, "manifest": manifest, "requirements": []}
    return document.sign(fields, key).to_json().encode()


def run_until_final(host: FakeHost, mark_running: bool = True) -> None:
    for _ in range(200):
        if mark_running:
            for name, health in host.health.items():
                if health.state == "starting":
                    host.health[name] = d.ResourceHealth("running", 100 + len(name), None)
        if host.published and host.published[-1]["state"] in d.FINAL:
            return
        host.now += 0.01
        host.run_timers()
    raise AssertionError(host.states())


def test_a_deployment_goes_through_every_state_to_successful(machine: Any) -> None:
    deployments, host, key, keyfile = machine
    payload = signed(key, manifest_text(keyfile, '[resources.sign]\ntype = "echoer"\n'))
    deployments.received(payload)
    run_until_final(host)
    assert host.states() == [d.RECEIVED, d.INSTALLING, d.APPLYING, d.VERIFYING, d.SUCCESSFUL]
    last = host.published[-1]
    assert last["generation"] == 2
    assert last["id"] == document.deployment_id(json.loads(payload)["signature"])
    assert set(last) == {"id", "sequence", "state", "reason", "generation", "at"} and last["at"].endswith("Z")
    deployments.received(payload)  # delivered again (retained, reconnect): nothing at all
    assert len(host.published) == 5 and host.rejections == []


def test_a_resource_that_fails_rolls_back_to_the_previous_generation(machine: Any) -> None:
    deployments, host, key, keyfile = machine
    deployments.received(signed(key, manifest_text(keyfile, '[resources.sign]\ntype = "echoer"\n')))
    host.run_timers()
    host.health["sign"] = d.ResourceHealth("backoff", None, "RuntimeError: boom at start")
    run_until_final(host, mark_running=False)
    assert host.states()[-2:] == [d.ROLLING_BACK, d.ROLLED_BACK]
    assert "resource sign is backoff: RuntimeError: boom at start" in host.published[-1]["reason"]
    assert host.published[-1]["generation"] == 1 and host.applied[-1] == []
    assert deployments.store.current().number == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["other key", "altered", "other host", "old sequence", "invalid", "no deploy",
                                  "too large", "unpinned"])
def test_each_rejection_changes_nothing_and_is_counted(machine: Any, case: str) -> None:
    deployments, host, key, keyfile = machine
    good = manifest_text(keyfile)
    payloads = {
        "other key": signed(Ed25519PrivateKey.generate(), good),
        "altered": signed(key, good).replace(b'"sequence": 10', b'"sequence": 11'),
        "other host": signed(key, good, host="gw2"),
        "old sequence": signed(key, good, sequence=0),
        "invalid": signed(key, good + "\n[resources.x]\ntype = 5\n"),
        "no deploy": signed(key, '[host]\nname = "gw1"\n'),
        "too large": b" " * (document.MAX_DOCUMENT_BYTES + 1),
        "unpinned": document.sign({"host": "gw1", "sequence": 10, "manifest": good,
                                   "requirements": ["x>=1"]}, key).to_json().encode(),
    }
    deployments.received(payloads[case])
    assert host.states()[-1] == d.REJECTED and host.rejections == [1], host.published
    assert host.applied == [] and deployments.store.current().number == 1  # type: ignore[union-attr]
    reason = host.published[-1]["reason"]
    expected = {"other key": "does not match any trusted key", "altered": "does not match any trusted key",
                "other host": "for host 'gw2'", "old sequence": "not newer", "invalid": "resources.x.type",
                "no deploy": "lock the fleet out", "too large": "1 MiB", "unpinned": "requirements[0]"}[case]
    assert expected in reason, reason
    deployments.received(payloads[case])  # the same document again: not counted twice
    assert host.rejections == [1] or case == "too large"


def test_local_rollback_goes_through_apply_and_verification(machine: Any) -> None:
    deployments, host, key, keyfile = machine
    deployments.received(signed(key, manifest_text(keyfile, '[resources.sign]\ntype = "echoer"\n')))
    run_until_final(host)
    ok, message = deployments.roll_back_to(None)
    assert ok, message
    run_until_final(host)
    assert host.states()[-3:] == [d.APPLYING, d.VERIFYING, d.SUCCESSFUL]
    assert host.published[-1]["generation"] == 1 and host.applied[-1] == []
    ok, message = deployments.roll_back_to(7)
    assert not ok and "no generation 7" in message


def test_a_document_crosses_the_events_pipe_in_parts_each_under_pipe_buf() -> None:
    from sghost.health.deployrelay import Reassembler, split

    payload = bytes(range(256)) * 5000  # 1.25 MB: over 1 MiB, so that the supervisor can reject it by size
    parts = split(payload, 7)
    assert all(len(json.dumps({"kind": "deploy_part", **part}, separators=(",", ":"))) < 4096 for part in parts)
    reassembler = Reassembler()
    results = [reassembler.feed(part) for part in parts]
    assert results[-1] == payload and all(result is None for result in results[:-1])
    assert reassembler.feed(split(b"{}", 8)[0]) == b"{}"
    broken = split(payload, 9)
    assert [reassembler.feed(part) for part in broken[:3] + broken[4:]] == [None] * (len(broken) - 1)


def test_rejections_are_all_counted_but_logged_at_most_once_a_minute(
    machine: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deployments, host, key, keyfile = machine
    for sequence in range(1, 6):
        deployments.received(signed(key, manifest_text(keyfile), sequence=sequence, host="gw2"))
    assert host.rejections == [1, 2, 3, 4, 5] and host.states().count(d.REJECTED) == 5
    assert sum("rejected" in record.getMessage() for record in caplog.records) == 1
    host.now += d.REJECTION_LOG_INTERVAL
    deployments.received(signed(key, manifest_text(keyfile), sequence=9, host="gw2"))
    assert "4 more rejected before this, not logged" in caplog.records[-1].getMessage()
