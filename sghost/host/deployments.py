"""Fleet deployments on the gateway: the state machine, and the orchestrator that drives it.

States (the ``state`` of ``data/<host>/deployment``)::

    received -> rejected
             -> installing -> rejected | failed
                           -> applying -> verifying -> successful
                                                    -> rolling-back -> rolled-back | failed

Each transition is a function of :class:`Deployments` that takes the host
through the small :class:`DeployHost` protocol, so it is testable without a
broker or processes (as Mender's state scripts are testable one by one). The
supervisor implements the protocol as a thin adapter over its reload code.

Nothing blocks the supervisor's loop: pip runs as a child process that a timer
polls, and verification is a timer that looks at the resources' states.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sghost.config.deploy import DeployConfig, deployments_on
from sghost.config.manifest import HostConfig
from sghost.deploy import document as documents
from sghost.deploy.generations import (
    Generation,
    GenerationStore,
    install_failure,
    now_iso,
    requirement_problems,
    start_install,
)
from sghost.health.states import BACKOFF, FATAL, RUNNING

RECEIVED = "received"
REJECTED = "rejected"
INSTALLING = "installing"
APPLYING = "applying"
VERIFYING = "verifying"
SUCCESSFUL = "successful"
ROLLING_BACK = "rolling-back"
ROLLED_BACK = "rolled-back"
FAILED = "failed"
STATES = (RECEIVED, REJECTED, INSTALLING, APPLYING, VERIFYING, SUCCESSFUL, ROLLING_BACK, ROLLED_BACK, FAILED)
FINAL = (REJECTED, SUCCESSFUL, ROLLED_BACK, FAILED)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    RECEIVED: (REJECTED, INSTALLING),
    INSTALLING: (REJECTED, FAILED, APPLYING),
    APPLYING: (VERIFYING, ROLLING_BACK),
    VERIFYING: (SUCCESSFUL, ROLLING_BACK),
    ROLLING_BACK: (ROLLED_BACK, FAILED),
}
"""Which state may follow which; anything else is a bug (:class:`TransitionError`)."""

DEPLOYMENT_SIGNAL = "deployment"
REJECTED_SIGNAL = "deploy_rejected"
POLL_INTERVAL = 0.2
"""Seconds between looks at pip and at the resources while verifying."""
START_GRACE = 30.0
"""Seconds beyond verify_seconds an added or changed resource has to reach running at all."""
REJECTION_LOG_INTERVAL = 60.0
"""Seconds between log lines about rejected documents (each is counted, and published, regardless)."""

log = logging.getLogger("sghost.deploy")


class TransitionError(RuntimeError):
    """A state change the machine does not allow."""


def check_transition(before: str, after: str) -> None:
    if after not in TRANSITIONS.get(before, ()):
        raise TransitionError(f"deployment state {before} cannot be followed by {after}")


@dataclass(frozen=True)
class Applied:
    """What applying a configuration changed."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    uplink_changed: bool = False

    @property
    def to_verify(self) -> list[str]:
        return [*self.added, *self.changed]


@dataclass(frozen=True)
class ResourceHealth:
    state: str
    pid: int | None
    error: str | None
    enabled: bool = True


@dataclass(frozen=True)
class CheckResult:
    """A manifest checked as ``sghost check`` does (with the generation's packages, if any)."""

    config: HostConfig | None
    problems: str = ""


class DeployHost(Protocol):
    """What the deployment orchestrator needs from the host that runs the resources."""

    host_name: str

    def call_later(self, delay: float, callback: Callable[[], Any]) -> Any: ...
    def check_manifest(self, text: str, site: Path | None) -> CheckResult: ...
    def start_check(self, text: str, site: Path) -> Any: ...
    def finish_check(self, check: Any, text: str, site: Path) -> CheckResult: ...
    def apply_config(self, config: HostConfig, site: Path | None) -> Applied: ...
    def resource_health(self, name: str) -> ResourceHealth | None: ...
    def resource_names(self) -> list[str]: ...
    def uplink_connected(self) -> bool: ...
    def publish_deployment(self, document: dict[str, Any]) -> None: ...
    def count_rejection(self, total: int) -> None: ...


@dataclass
class Verification:
    """Every added or changed resource must run, with one pid, for ``verify_seconds``."""

    names: list[str]
    seconds: float
    uplink: bool
    started: float = field(default_factory=time.monotonic)
    running_since: dict[str, tuple[int, float]] = field(default_factory=dict)

    def look(self, host: DeployHost, now: float) -> tuple[bool | None, str]:
        """True: verified; False: failed (with the reason); None: keep looking."""
        stable = True
        for name in self.names:
            health = host.resource_health(name)
            if health is None or not health.enabled:
                continue
            seen = self.running_since.get(name)
            if health.state in (BACKOFF, FATAL):
                return False, f"resource {name} is {health.state}: {health.error or 'its process ended'}"
            if seen is not None and (health.state != RUNNING or health.pid != seen[0]):
                why = health.error or f"it is {health.state}"
                return False, f"resource {name} restarted within verify_seconds ({self.seconds:g} s): {why}"
            if health.state == RUNNING and health.pid is not None:
                if seen is None:
                    self.running_since[name] = seen = (health.pid, now)
                stable = stable and now - seen[1] >= self.seconds
            else:
                stable = False
                if now - self.started >= self.seconds + START_GRACE:
                    return False, f"resource {name} did not reach running within {self.seconds + START_GRACE:g} s"
        uplink_ok = not self.uplink or host.uplink_connected()
        if stable and uplink_ok and now - self.started >= self.seconds:
            return True, ""
        if not uplink_ok and now - self.started >= self.seconds:
            return False, f"the uplink did not connect again within verify_seconds ({self.seconds:g} s)"
        return None, ""


@dataclass
class Active:
    """The deployment in progress (or the rollback a local ``sghost rollback`` asked for)."""

    id: str | None
    sequence: int
    state: str
    generation: Generation
    previous: Generation | None
    config: HostConfig | None = None
    pip: subprocess.Popen[bytes] | None = None
    verification: Verification | None = None
    rollback_to: Generation | None = None
    reason: str = ""


class Deployments:
    """Receives documents, moves them through the states, and keeps the generations on disk."""

    def __init__(
        self, host: DeployHost, store: GenerationStore, config: DeployConfig, trusted_keys: list[Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.clock = clock
        self.store = store
        self.config = config
        self.trusted_keys = trusted_keys
        self.active: Active | None = None
        self.pending: bytes | None = None
        status = store.read_status()
        self.last: dict[str, Any] = status.get("last") or {}
        self.highest_sequence: int = int(status.get("highest_sequence") or 0)
        self.rejected = 0
        self._rejection_logged = -REJECTION_LOG_INTERVAL
        self._rejections_unlogged = 0
        self._seen_ids: set[str] = {g.id for g in store.generations() if g.id}
        if self.last.get("id"):
            self._seen_ids.add(self.last["id"])

    # -------------------------------------------------------------- publish

    @property
    def current(self) -> Generation | None:
        return self.store.current()

    def _publish(self, deployment_id: str | None, sequence: int, state: str, reason: str = "") -> None:
        current = self.store.current()
        document = {
            "id": deployment_id, "sequence": sequence, "state": state, "reason": reason,
            "generation": current.number if current is not None else None, "at": now_iso(),
        }
        self._log(deployment_id, sequence, state, reason)
        self.last = document
        if deployment_id is not None:
            self._seen_ids.add(deployment_id)  # decided or in progress: a re-delivery is ignored
        self.store.write_status(document, self.highest_sequence)
        self.host.publish_deployment(document)

    def _log(self, deployment_id: str | None, sequence: int, state: str, reason: str) -> None:
        if state == REJECTED:  # anyone who may publish on the command topic can send many: rate-limited
            now = self.clock()
            if now - self._rejection_logged < REJECTION_LOG_INTERVAL:
                self._rejections_unlogged += 1
                return
            if self._rejections_unlogged:
                reason += f" ({self._rejections_unlogged} more rejected before this, not logged; see deploy_rejected)"
            self._rejection_logged, self._rejections_unlogged = now, 0
        level = logging.WARNING if state in (REJECTED, FAILED, ROLLED_BACK, ROLLING_BACK) else logging.INFO
        shown = f": {reason}" if reason else ""
        log.log(level, "deployment %s (sequence %s): %s%s", deployment_id, sequence, state, shown)

    def republish(self) -> None:
        """Send the last state and the rejection count again (a new meta-resource process knows nothing)."""
        if self.last:
            self.host.publish_deployment(self.last)
        self.host.count_rejection(self.rejected)

    def _move(self, active: Active, state: str, reason: str = "") -> None:
        check_transition(active.state, state)
        active.state = state
        active.reason = reason
        self._publish(active.id, active.sequence, state, reason)

    # -------------------------------------------------------------- receive

    def received(self, payload: bytes) -> None:
        """A document arrived on ``command/<host>/deploy``."""
        try:
            deployment_id = documents.deployment_id(json.loads(payload)["signature"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            deployment_id = None
        if deployment_id is not None and self._is_redelivery(deployment_id):
            log.debug("deployment %s delivered again: ignored", deployment_id)
            return
        if self.active is not None:
            self.pending = payload  # the newest waits; it is checked once the one in progress ends
            return
        self._guarded(lambda: self._receive(payload, deployment_id))

    def _is_redelivery(self, deployment_id: str) -> bool:
        active = self.active
        return (active is not None and active.id == deployment_id) or deployment_id in self._seen_ids

    def _reject(self, deployment_id: str | None, sequence: int, reason: str) -> None:
        self.rejected += 1
        if deployment_id is not None:
            self._seen_ids.add(deployment_id)
        self._publish(deployment_id, sequence, REJECTED, reason)
        self.host.count_rejection(self.rejected)

    def _receive(self, payload: bytes, deployment_id: str | None) -> None:
        try:
            deployment = documents.parse(payload)
        except documents.DocumentError as error:
            self._reject(deployment_id, 0, str(error))
            return
        deployment_id, sequence = deployment.id, deployment.sequence
        self._seen_ids.add(deployment_id)
        self._publish(deployment_id, sequence, RECEIVED)
        reason = self.validate(deployment)
        config = None
        if not reason and not deployment.requirements:
            config, reason = self._check_manifest(deployment.manifest, None)
        if reason:
            self._reject(deployment_id, sequence, reason)
            return
        self._install(deployment, config)

    def validate(self, deployment: documents.Deployment) -> str:
        """Why ``deployment`` is refused before anything is written, or ``""``."""
        try:
            documents.verify(deployment, self.trusted_keys)
        except documents.DocumentError as error:
            return str(error)
        if deployment.host != self.host.host_name:
            return f"document is for host {deployment.host!r}; this is {self.host.host_name!r}"
        if deployment.sequence <= self.highest_sequence:
            return (f"sequence {deployment.sequence} is not newer than the last one applied "
                    f"({self.highest_sequence}); expected a larger sequence")
        problems = requirement_problems(deployment.requirements)
        if problems:
            return "; ".join(problems)
        if deployment.requirements and not self.config.package_source:
            return "requirements given, but [deploy] has neither index_url nor find_links to install them from"
        return ""

    def _check_manifest(self, text: str, site: Path | None) -> tuple[HostConfig | None, str]:
        return self._verdict(self.host.check_manifest(text, site))

    def _verdict(self, result: CheckResult) -> tuple[HostConfig | None, str]:
        if result.config is None:
            return None, f"invalid manifest:\n{result.problems}"
        deploy = result.config.deploy
        if not deployments_on(result.config):
            return None, "the manifest drops [deploy] enabled = true, which would lock the fleet out; keep it"
        if not deploy.trusted_keys:
            return None, "the manifest drops every [deploy] trusted key, which would lock the fleet out; keep one"
        return result.config, ""

    # -------------------------------------------------------------- install

    def _install(self, deployment: documents.Deployment, config: HostConfig | None) -> None:
        previous = self.store.current()
        generation = self.store.create(
            deployment.manifest, deployment.sequence, deployment.id, deployment.to_json(), deployment.requirements,
        )
        active = Active(deployment.id, deployment.sequence, RECEIVED, generation, previous, config=config)
        self.active = active
        self._move(active, INSTALLING)
        if not deployment.requirements:
            self._installed(active)
            return
        try:
            active.pip = start_install(generation, self.config.index_url, self.config.find_links)
        except OSError as error:
            self._end_install(active, FAILED, f"cannot run pip: {error}")
            return
        self._later(lambda: self._poll_pip(active))

    def _later(self, step: Callable[[], None]) -> None:
        self.host.call_later(POLL_INTERVAL, lambda: self._guarded(step))

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run one step; a bug in it fails the deployment, it never takes sghost down."""
        try:
            step()
        except Exception as error:  # reported on data/<host>/deployment and in the log
            log.exception("deployment step failed")
            active, self.active = self.active, None
            if active is not None:
                self._publish(active.id, active.sequence, FAILED, f"internal error: {type(error).__name__}: {error}")

    def _poll_pip(self, active: Active) -> None:
        assert active.pip is not None
        code = active.pip.poll()
        if code is None:
            self._later(lambda: self._poll_pip(active))
            return
        if code != 0:
            mismatch, detail = install_failure(active.generation)
            self._end_install(active, REJECTED if mismatch else FAILED, f"pip install failed: {detail}")
            return
        self._installed(active)

    def _installed(self, active: Active) -> None:
        """Packages installed: check the manifest with them, in a process of its own that a timer polls."""
        if active.config is not None:
            self._checked(active, CheckResult(active.config))
            return
        text, site = active.generation.manifest_text(), active.generation.site
        check = self.host.start_check(text, site)

        def poll() -> None:
            if check.poll() is None:
                self._later(poll)
            else:
                self._checked(active, self.host.finish_check(check, text, site))

        self._later(poll)

    def _checked(self, active: Active, result: CheckResult) -> None:
        active.config, reason = self._verdict(result)
        if active.config is None:
            self._end_install(active, REJECTED, reason)
            return
        active.generation = self.store.update(active.generation, complete=True, state=APPLYING)
        self._apply(active)

    def _end_install(self, active: Active, state: str, reason: str) -> None:
        """The generation is never switched to: remove it and say why."""
        self.store.remove(active.generation)
        if state == REJECTED:
            self.rejected += 1
            self.host.count_rejection(self.rejected)
        self._move(active, state, reason)
        self._finish()

    # ---------------------------------------------------------------- apply

    def _apply(self, active: Active) -> None:
        assert active.config is not None
        self.store.switch(active.generation)  # first: a crash from here on starts the new generation
        self.highest_sequence = max(self.highest_sequence, active.sequence)
        self._move(active, APPLYING)
        site = active.generation.site if active.generation.packages else None
        applied = self.host.apply_config(active.config, site)
        self._verify(active, applied)

    def _verify(self, active: Active, applied: Applied, reason: str = "") -> None:
        self._move(active, VERIFYING, reason)
        self.store.update(active.generation, state=VERIFYING)
        seconds = active.config.deploy.verify_seconds if active.config is not None else self.config.verify_seconds
        active.verification = Verification(applied.to_verify, seconds, applied.uplink_changed, started=self.clock())
        self._later(lambda: self._poll_verification(active))

    def _poll_verification(self, active: Active) -> None:
        if self.active is not active or active.verification is None:
            return
        verified, reason = active.verification.look(self.host, self.clock())
        if verified is None:
            self._later(lambda: self._poll_verification(active))
        elif verified:
            self._succeeded(active)
        else:
            self._roll_back(active, reason)

    def _adopt(self, config: HostConfig | None) -> None:
        """Take the ``[deploy]`` table of the configuration now in force (a deployment may rotate the keys)."""
        if config is None or not deployments_on(config):
            return
        try:
            keys = [documents.load_public_key(path) for path in config.deploy.trusted_keys]
        except documents.DocumentError as error:
            log.error("deployment: keeping the trusted keys in force: %s", error)
            return
        self.config, self.trusted_keys, self.store.keep = config.deploy, keys, config.deploy.keep_generations

    def _succeeded(self, active: Active) -> None:
        self._adopt(active.config)
        self.store.update(active.generation, state=SUCCESSFUL, reason="")
        self._move(active, SUCCESSFUL)
        removed = self.store.prune()
        if removed:
            log.info("deployment: removed generation(s) %s (keep_generations = %d)",
                     ", ".join(map(str, removed)), self.store.keep)
        self._finish()

    # ------------------------------------------------------------- rollback

    def _roll_back(self, active: Active, reason: str) -> None:
        self._move(active, ROLLING_BACK, reason)
        self.store.update(active.generation, state=ROLLING_BACK, reason=reason)
        target = active.rollback_to or active.previous
        if target is None:
            self._move(active, FAILED, f"{reason}; no earlier generation to switch back to")
            self.store.update(active.generation, state=FAILED, reason=active.reason)
            self._finish()
            return
        self.store.switch(target)
        site = target.site if target.packages else None
        result = self.host.check_manifest(target.manifest_text(), site)
        if result.config is None:
            self._move(active, FAILED, f"{reason}; generation {target.number} no longer loads:\n{result.problems}")
            self.store.update(active.generation, state=FAILED, reason=active.reason)
            self._finish()
            return
        self.host.apply_config(result.config, site)
        self._adopt(result.config)
        self.store.update(active.generation, state=ROLLED_BACK, reason=reason)
        self._move(active, ROLLED_BACK, reason)
        self._finish()

    def _finish(self) -> None:
        self.active = None
        pending, self.pending = self.pending, None
        if pending is not None:
            self.received(pending)

    # ------------------------------------------------------ local commands

    def roll_back_to(self, number: int | None) -> tuple[bool, str]:
        """``sghost rollback [GENERATION]``: switch to an earlier generation, applied and verified."""
        if self.active is not None:
            return False, f"deployment {self.active.id} is {self.active.state}; try again when it has ended"
        current = self.store.current()
        if current is None:
            return False, "no generation is in force"
        target = self.store.get(number) if number is not None else self.store.previous(current.number)
        if target is None or not target.complete:
            known = ", ".join(str(g.number) for g in self.store.generations() if g.complete) or "none"
            return False, f"no generation {number if number is not None else 'before ' + str(current.number)}; " \
                f"complete generations: {known}"
        if target.number == current.number:
            return False, f"generation {target.number} is already in force"
        site = target.site if target.packages else None
        config, reason = self._check_manifest(target.manifest_text(), site)
        if config is None:
            return False, f"generation {target.number} cannot be applied: {reason}"
        active = Active(target.id, target.sequence, APPLYING, target, current, config=config, rollback_to=current)
        self.active = active

        def start() -> None:
            self.store.switch(target)
            self._publish(target.id, target.sequence, APPLYING, f"sghost rollback to generation {target.number}")
            self._verify(active, self.host.apply_config(config, site))

        self._guarded(start)
        if self.active is not active:
            return False, f"rollback to generation {target.number} failed: {self.last.get('reason')}"
        return True, f"rolling back to generation {target.number}; its state follows on data/{self.host.host_name}/" \
            f"{DEPLOYMENT_SIGNAL}"

    def close(self) -> None:
        """sghost stops: end a pip still running (the next start reports the deployment as failed)."""
        active = self.active
        if active is not None and active.pip is not None and active.pip.poll() is None:
            active.pip.kill()
            active.pip.wait()

    def status(self) -> dict[str, Any]:
        """What ``sghost deploy status`` shows."""
        current = self.store.current()
        return {
            "last": self.last,
            "in_progress": None if self.active is None else {"id": self.active.id, "state": self.active.state},
            "current": current.as_dict() if current is not None else None,
            "deploy_rejected": self.rejected,
            "highest_sequence": self.highest_sequence,
        }

    # --------------------------------------------------------------- start

    def started(self, notes: list[tuple[Generation, str, str]], resume: Generation | None) -> None:
        """After sghost started: report interrupted deployments, and verify one it was switched to."""
        for generation, state, reason in notes:
            self._publish(generation.id, generation.sequence, state, reason)
        if resume is None:
            self.republish()
            return
        previous = self.store.previous(resume.number)
        active = Active(resume.id, resume.sequence, APPLYING, resume, previous)
        self.active = active
        reason = f"sghost restarted while deploying generation {resume.number}: it runs, and is verified again"
        self._verify(active, Applied(added=self.host.resource_names(), changed=[], removed=[]), reason)

