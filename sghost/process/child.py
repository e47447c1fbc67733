"""The life of one resource process: build its Resource, run its plugin, loop, stop cleanly.

Runs in a process forked from the zygote. The main loop drives the MQTT
network (``Resource.loop()``), the plugin's periodic tasks and the heartbeat,
all on one thread: a callback that hangs stops the heartbeat, so the
supervisor's watchdog sees the hang even though the process is alive.
"""

from __future__ import annotations

import logging
import signal
import sys
import time

import paho.mqtt.client as mqtt

from sgframework import Resource
from sghost.context import ResourceContext
from sghost.plugins import PluginRegistry
from sghost.process import events
from sghost.process.exitcodes import EXIT_BROKER_REFUSED, EXIT_OK, EXIT_PLUGIN_ERROR, EXIT_TYPE_MISSING
from sghost.process.spec import ChildSpec

LOOP_TIMEOUT = 0.25

PROTOCOLS = {"MQTTv31": mqtt.MQTTv31, "MQTTv311": mqtt.MQTTv311, "MQTTv5": mqtt.MQTTv5}


class _StopFlag:
    def __init__(self) -> None:
        self.requested = False

    def request(self, signum: int, frame: object) -> None:
        self.requested = True


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


def build_resource(spec: ChildSpec) -> Resource:
    resource = Resource(spec.name, spec.host, spec.port, spec.certificate_directory)
    resource.protocol = PROTOCOLS[spec.protocol]
    resource.qos = spec.qos
    resource.keepalive = spec.keepalive
    resource.username = spec.username
    resource.password = spec.password
    resource.tls_insecure = spec.tls_insecure
    resource.timeout = LOOP_TIMEOUT
    return resource


def run_child(spec: ChildSpec, registry: PluginRegistry, channel: events.EventWriter, inbound: list[int]) -> int:
    """Run one resource until SIGTERM; return the process's exit code."""
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop.request)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked since the fork: deliver it now
    log = logging.getLogger(spec.name)
    try:
        resource_type = registry.get(spec.type_name)
    except KeyError:
        reason = registry.missing_type_reason(spec.type_name)
        log.error("%s", reason)
        channel.send(events.PLUGIN_ERROR, text=reason)
        return EXIT_TYPE_MISSING
    resource = build_resource(spec)
    context = ResourceContext(spec.name, spec.settings, resource)
    try:
        resource_type.setup(context)
    except Exception as error:
        log.exception("The setup of resource type %r failed", spec.type_name)
        channel.send(events.PLUGIN_ERROR, text=one_line(error))
        return EXIT_PLUGIN_ERROR
    channel.send(events.READY, topics=resource.announced_topics)
    return _run_loop(spec, resource, context, channel, stop)


def _run_loop(
    spec: ChildSpec, resource: Resource, context: ResourceContext, channel: events.EventWriter, stop: _StopFlag
) -> int:
    reporter = _ConnectionReporter(channel)
    resource.on_broker_connectionstatus_info = reporter.status_changed
    try:
        resource.start(use_threaded_networking=False)
    except (OSError, ValueError) as error:
        text = f"cannot start the MQTT client: {one_line(error)}"
        logging.getLogger(spec.name).error("%s", text)
        channel.send(events.CONNECT_ERROR, text=text, refused=True)
        return EXIT_BROKER_REFUSED
    context.start_threads()
    heartbeat_interval = spec.heartbeat_interval
    next_heartbeat = 0.0
    exit_code = EXIT_OK
    while not stop.requested:
        until_timer = context.run_due_timers()
        resource.timeout = LOOP_TIMEOUT if until_timer is None else max(0.0, min(LOOP_TIMEOUT, until_timer))
        resource.loop()
        now = time.monotonic()
        if heartbeat_interval is not None and now >= next_heartbeat:
            channel.send(events.HEARTBEAT)
            next_heartbeat = now + heartbeat_interval
        if reporter.check_refused(resource):
            exit_code = EXIT_BROKER_REFUSED
            break
        if context.thread_failure is not None:
            channel.send(events.PLUGIN_ERROR, text=one_line(context.thread_failure))
            exit_code = EXIT_PLUGIN_ERROR
            break
    context.run_cleanups()
    resource.stop()
    return exit_code


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
