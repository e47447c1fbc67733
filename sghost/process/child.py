"""The life of one resource process: build its Resource, run its plugin, loop, stop cleanly.

Runs in a process forked from the zygote. paho's network thread keeps the
connection going (socket I/O, acknowledgements); the main loop runs the MQTT
callbacks (``Resource.run_callbacks()``), the plugin's periodic tasks and the
heartbeat, all on one thread: a callback that hangs stops the heartbeat, so the
supervisor's watchdog sees the hang even though the process is alive, and a
callback that sends much can wait for the broker's acknowledgements, which
arrive on the network thread.

An idle resource costs no CPU: the main loop sleeps in ``run_callbacks()`` until
a message or status change arrives, or until the next due thing: a periodic
task (``context.every``), a heartbeat (only with a watchdog), a look at the
publish counters (soon after activity, then ever more rarely, up to
``COUNTERS_IDLE_MAX``), or, while not connected, a look for a refusal every
``LOOP_TIMEOUT``. SIGTERM, a request from the supervisor (SIGIO on its pipe) and
a failed worker thread wake it at once (``Resource.wake_callbacks()``). The
threads sghost starts are started with SIGTERM and SIGIO blocked, so that these
signals interrupt the main thread's wait rather than land on another thread.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from sgframework import Resource
from sghost.context import ResourceContext
from sghost.plugins import PluginRegistry
from sghost.process import events
from sghost.process.exitcodes import EXIT_BROKER_REFUSED, EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_TYPE_MISSING
from sghost.process.generationsite import registry_for_site
from sghost.process.preflight import prepare
from sghost.process.spec import ChildSpec
from sghost.process.supervisorlink import SupervisorLink

LOOP_TIMEOUT = 0.25
"""Seconds between looks for a refused connection while the resource is not connected."""
COUNTERS_INTERVAL = 0.5
"""Seconds between reports of the publish counters to the supervisor; nothing is sent while they stay the same."""
COUNTERS_IDLE_MAX = 30.0
"""The longest quiet spell between looks at the counters (a worker thread may send without waking the loop)."""
WAKE_SIGNALS = {signal.SIGTERM, signal.SIGIO}

PROTOCOLS = {"MQTTv31": mqtt.MQTTv31, "MQTTv311": mqtt.MQTTv311, "MQTTv5": mqtt.MQTTv5}


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self.wake: Callable[[], None] = lambda: None
        """Set once the resource exists: makes its sleeping main loop look at the flag."""

    def request(self, signum: int, frame: object) -> None:
        self.requested = True
        self.wake()


def configure_child_logging(level: str) -> None:
    """Log to stderr, which the supervisor captures line by line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("sgframework").setLevel(max(logging.INFO, logging.getLevelName(level)))


WARM_UP_ROUNDS = 10
"""CPython quickens a function's code after a few calls, writing into its code object."""


def warm_up() -> None:
    """In the zygote, before any fork: run what every child runs first, with no broker and no thread.

    Each child then finds these functions already quickened and the caches they fill
    (regular expressions, loggers, JSON encoders) already filled, in memory it shares
    with the zygote, instead of copying the pages they live on.
    """
    spec = ChildSpec(name="sghost-warm-up", type_name="", settings={}, host="127.0.0.1", port=1)
    for _ in range(WARM_UP_ROUNDS):
        resource = build_resource(spec)
        resource.register_incoming_command("state", _ignore_command, defaultvalue=False, send_echo_as_retained=True)
        resource.register_outgoing_data("value", send_data_as_retained=True)
        ResourceContext(spec.name, spec.settings, resource).every(1.0, _ignore_command)
        mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=spec.name, protocol=mqtt.MQTTv311
        ).enable_logger(resource.logger)
        json.dumps({"kind": events.COUNTERS, "published": 0, "refused": 0}, separators=(",", ":"))


def _ignore_command(*_args: object) -> None:
    return None


def build_resource(spec: ChildSpec) -> Resource:
    resource = Resource(spec.name, spec.host, spec.port, spec.certificate_directory)
    resource.protocol = PROTOCOLS[spec.protocol]
    resource.qos = spec.qos
    resource.keepalive = spec.keepalive
    resource.username = spec.username
    resource.password = spec.password
    resource.tls_insecure = spec.tls_insecure
    resource.timeout = LOOP_TIMEOUT
    if spec.watchdog > 0:
        # A send waiting for room must give up before the watchdog takes it for a hang.
        resource.publish_timeout = min(resource.publish_timeout, spec.watchdog / 2)
    return resource


def run_child(spec: ChildSpec, registry: PluginRegistry, channel: events.EventWriter, inbound: list[int]) -> int:
    """Run one resource until SIGTERM; return the process's exit code."""
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.request)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM is blocked since the fork; it stays so, with SIGIO, until the threads are started.
    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE_SIGNALS)
    log = logging.getLogger(spec.name)
    if (refused := prepare(spec, channel)) is not None:
        return refused
    registry = registry_for_site(registry, spec.site_dir)
    try:
        resource_type = registry.get(spec.type_name)
    except KeyError:
        reason = registry.missing_type_reason(spec.type_name)
        log.error("%s", reason)
        channel.send(events.PLUGIN_ERROR, text=reason)
        return EXIT_TYPE_MISSING
    resource = build_resource(spec)
    stop.wake = resource.wake_callbacks
    context = ResourceContext(spec.name, spec.settings, resource, spec.base_directory)
    context.on_thread_failure = resource.wake_callbacks
    link = SupervisorLink(channel, inbound, resource, context)  # issue 10: rebirth, context.ready()
    try:
        resource_type.setup(context)
    except Exception as error:
        log.exception("The setup of resource type %r failed", spec.type_name)
        channel.send(events.PLUGIN_ERROR, text=one_line(error))
        return EXIT_PLUGIN_ERROR
    channel.send(events.READY, topics=resource.announced_topics, signal=resource_type.ready == "signal")
    return _run_loop(spec, resource, context, channel, stop, link.poll)


def _run_loop(
    spec: ChildSpec,
    resource: Resource,
    context: ResourceContext,
    channel: events.EventWriter,
    stop: _StopFlag,
    between_iterations: Callable[[], None] = lambda: None,
) -> int:
    reporter = _ConnectionReporter(channel)
    resource.on_broker_connectionstatus_info = reporter.status_changed
    resource.callbacks_in_thread = False  # the loop below runs them, between timers and heartbeats
    try:
        resource.start(use_threaded_networking=True)
    except (OSError, ValueError) as error:
        text = f"cannot start the MQTT client: {one_line(error)}"
        logging.getLogger(spec.name).error("%s", text)
        channel.send(events.CONNECT_ERROR, text=text, refused=True)
        return EXIT_BROKER_REFUSED
    context.start_threads()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WAKE_SIGNALS)  # the threads keep them blocked
    heartbeat_interval = spec.heartbeat_interval
    next_heartbeat = 0.0
    counters = _CountersReporter(channel)
    exit_code = EXIT_OK
    while not stop.requested:
        until_timer = context.run_due_timers()
        between_iterations()  # the supervisor's requests (SupervisorLink.poll)
        now = time.monotonic()
        if heartbeat_interval is not None and now >= next_heartbeat:
            channel.send(events.HEARTBEAT)
            next_heartbeat = now + heartbeat_interval
        counters.after_iteration(resource, now)
        if reporter.check_refused(resource):
            exit_code = EXIT_BROKER_REFUSED
            break
        if context.thread_failure is not None:
            channel.send(events.PLUGIN_ERROR, text=one_line(context.thread_failure))
            exit_code = EXIT_PLUGIN_ERROR
            break
        if stop.requested:
            break
        wake_at = [counters.due]
        if until_timer is not None:
            wake_at.append(now + until_timer)
        if heartbeat_interval is not None:
            wake_at.append(next_heartbeat)
        if not resource.is_connected:
            wake_at.append(now + LOOP_TIMEOUT)  # a refusal wakes nothing: look for it
        resource.run_callbacks(max(0.0, min(wake_at) - time.monotonic()))
    context.run_cleanups()
    resource.stop()
    counters.report(resource)
    return exit_code


class _CountersReporter:
    """Sends the resource's publish counters to the supervisor when they changed, at most every 0.5 s.

    The loop looks at them after every iteration that is at least ``COUNTERS_INTERVAL``
    after the previous look, and asks to be woken for a look ``COUNTERS_INTERVAL`` after
    any other activity. While they keep changing, or messages wait for acknowledgement,
    it looks every ``COUNTERS_INTERVAL``; while they stay the same, ever more rarely.
    """

    def __init__(self, channel: events.EventWriter) -> None:
        self.channel = channel
        self.sent: dict[str, int] = {}
        self.last_look = -COUNTERS_INTERVAL
        self.quiet_interval = COUNTERS_INTERVAL
        self.due = 0.0
        """When the loop must wake for the next look (monotonic seconds)."""

    def after_iteration(self, resource: Resource, now: float) -> None:
        earliest = self.last_look + COUNTERS_INTERVAL
        if now < earliest:
            self.due = min(self.due, earliest)
            return
        self.last_look = now
        if self.report(resource) or self.sent["queued"]:
            self.quiet_interval = COUNTERS_INTERVAL
        else:
            self.quiet_interval = min(self.quiet_interval * 2, COUNTERS_IDLE_MAX)
        self.due = now + self.quiet_interval

    def report(self, resource: Resource) -> bool:
        """Send the counters if they changed; return whether they did."""
        counters = resource.counters
        values = {
            "published": counters.published,
            "refused": counters.refused,
            "dropped": counters.dropped,
            "queued": counters.queued,
        }
        if values == self.sent:
            return False
        self.sent = values
        self.channel.send(events.COUNTERS, **values)
        return True


class _ConnectionReporter:
    """Forwards broker connection changes and refusals to the supervisor."""

    def __init__(self, channel: events.EventWriter) -> None:
        self.channel = channel
        self.reported_error: str | None = None

    def status_changed(self, resource: Resource, connected: bool) -> None:
        if connected:
            host, port = resource.broker_address
            self.channel.send(events.CONNECTED, broker=f"{host}:{port}")
        else:
            self.channel.send(events.DISCONNECTED)

    def check_refused(self, resource: Resource) -> bool:
        error = resource.last_connection_error
        if error is None or error == self.reported_error:
            return False
        self.reported_error = error
        refused = (error.startswith("the broker refused") and not _is_transient(error)) or (
            resource.certificate_directory is not None and _is_tls_failure(error)
        )
        self.channel.send(events.CONNECT_ERROR, text=error, refused=refused)
        return refused


def _is_transient(error: str) -> bool:
    """A refusal that retrying heals: a cluster node that is recovering answers "Server unavailable" or "busy"."""
    lowered = error.lower()
    return "unavailable" in lowered or "busy" in lowered


def _is_tls_failure(error: str) -> bool:
    """A failed TLS handshake (bad, unknown or expired certificate) does not heal by retrying.

    Only asked with TLS on: without it, "closed the connection before accepting it" (whose
    hint names certificate_directory) is a node that hung up, e.g. a recovering cluster node.
    """
    return "SSL" in error or "certificate" in error.lower()


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
