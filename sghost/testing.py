"""Pytest helpers for sghost and resource plugins: a private broker, a recording subscriber, a real host.

Installed as a pytest plugin (entry point ``pytest11``), so a plugin
distribution's tests can use the fixtures without importing anything:

- ``mosquitto``: a private mosquitto on a free 127.0.0.1 port, one per test module.
- ``fresh_mosquitto``: the same, one per test, for tests that stop or break it.
- ``mqtt_recorder``: a factory of :class:`Recorder` subscribers on a broker.
- ``start_resource``: a plugin's resource set up as sghost would, in the test's own process.
- ``child_process``: starts any command as a :class:`ChildProcess`; killed after the test.
- ``host_factory``: starts ``sghost start`` on a manifest text (see :func:`manifest_text`)
  as a :class:`HostProcess`; stopped after the test. ``host_env`` is its environment.

And to import: :class:`ChildProcess` (any command, its output lines collected and
waited for), :func:`run_sghost` (the command line, to completion) and
:func:`wait_until` (polling state that sends no event, such as a process's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from sgframework import Resource, constants
from sghost.context import ResourceContext
from sghost.host.broker import MosquittoBroker


@dataclass(frozen=True)
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: str
    retain: bool
    qos: int
    at: float


class Recorder:
    """A raw paho subscriber that records every message and waits on conditions.

    It uses no sgframework code, so tests observe the broker as any client would.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: str | list[str] = "#",
        client_id: str = "",
        clean_session: bool = True,
        certificate_directory: Path | None = None,
    ) -> None:
        """``clean_session=False`` (with a ``client_id``) keeps the subscription and queue across broker restarts.

        ``certificate_directory`` (laid out as ``sghost certs issue`` writes one) makes it a TLS client with
        that identity.
        """
        self.host, self.port = host, port
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean_session
        )
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        if certificate_directory is not None:
            self.client.tls_set(*certificate_files(certificate_directory))

    def start(self, timeout: float = 5.0) -> Recorder:
        """Connect and subscribe; return once the broker acknowledged the subscription."""
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"recorder could not subscribe on {self.host}:{self.port}")
        return self

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait (up to 5 s) until the broker has it."""
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def wait_for(
        self,
        topic: str,
        payload: str | None = None,
        timeout: float = 5.0,
        after: float = 0.0,
        retain: bool | None = None,
    ) -> Received:
        """Return the first message on ``topic`` (with ``payload``) received at or after ``after``."""

        def match(message: Received) -> bool:
            return (
                message.topic == topic
                and (payload is None or message.payload == payload)
                and message.at >= after
                and (retain is None or message.retain == retain)
            )

        found = self.wait_until(lambda: next((m for m in self.messages if match(m)), None), timeout)
        if found is None:
            seen = [(m.topic, m.payload) for m in self.messages if m.topic == topic]
            raise AssertionError(f"no message {payload!r} on {topic!r} within {timeout} s; seen there: {seen}")
        return found

    def wait_until(self, condition: Callable[[], object], timeout: float = 5.0) -> object:
        """Wait until ``condition()`` is truthy (re-checked at each message); return its value or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = condition()
                remaining = deadline - time.monotonic()
                if value or remaining <= 0:
                    return value
                self._changed.wait(min(remaining, 0.1))

    def on(self, topic: str) -> list[Received]:
        """Every message received on ``topic`` so far."""
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def latest(self, topic: str) -> str | None:
        """The payload of the last message received on ``topic``, or None."""
        messages = self.on(topic)
        return messages[-1].payload if messages else None

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        client.subscribe([(topic, 2) for topic in self.topics])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received = Received(
            message.topic,
            message.payload.decode("utf-8", errors="replace"),
            bool(message.retain),
            message.qos,
            time.monotonic(),
        )
        with self._changed:
            self.messages.append(received)
            self._changed.notify_all()


def retained(broker: MosquittoBroker, topic_filter: str) -> dict[str, str]:
    """The retained messages under ``topic_filter``, as a new subscriber gets them.

    Complete: the broker sends the retained messages before a marker published after subscribing.
    """
    marker = f"sghost-testing/marker/{time.monotonic_ns()}"
    recorder = Recorder(broker.host, broker.port, [topic_filter, marker]).start()
    try:
        recorder.publish(marker, "end")
        recorder.wait_for(marker)
        return {m.topic: m.payload for m in recorder.messages if m.retain and m.topic != marker}
    finally:
        recorder.stop()


def certificate_files(directory: Path) -> tuple[str, str, str]:
    """The CA certificate, certificate and key of a certificate directory, in the order paho's ``tls_set`` takes."""
    return (
        str(directory / constants.CA_CERTS), str(directory / constants.CERTFILE), str(directory / constants.KEYFILE)
    )


def _private_mosquitto() -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker()
    broker.start()
    yield broker
    broker.cleanup()


@pytest.fixture(scope="module")
def mosquitto() -> Iterator[MosquittoBroker]:
    """A private mosquitto on a free loopback port, shared by the tests of one module."""
    yield from _private_mosquitto()


@pytest.fixture
def fresh_mosquitto() -> Iterator[MosquittoBroker]:
    """A private mosquitto for one test, which may stop and restart it."""
    yield from _private_mosquitto()


@pytest.fixture
def mqtt_recorder() -> Iterator[Callable[..., Recorder]]:
    """Factory: ``mqtt_recorder(broker, topics="#")`` returns a started :class:`Recorder`."""
    started: list[Recorder] = []

    def make(broker: MosquittoBroker, topics: str | list[str] = "#") -> Recorder:
        recorder = Recorder(broker.host, broker.port, topics).start()
        started.append(recorder)
        return recorder

    yield make
    for recorder in started:
        recorder.stop()


@pytest.fixture
def host_env() -> dict[str, str]:
    """The environment of the hosts ``host_factory`` starts; override it in a conftest.py to add plugins."""
    return sghost_environment()


@pytest.fixture
def host_factory(tmp_path: Path, host_env: dict[str, str]) -> Iterator[Callable[..., HostProcess]]:
    """``host_factory(text, name="hostconfig.toml", env=None, directory=tmp_path)`` starts sghost on ``text``.

    The manifest is written to ``directory / name`` (relative paths in it are relative to
    that directory); every host started is stopped after the test.
    """
    started: list[HostProcess] = []

    def make(
        text: str, name: str = "hostconfig.toml", env: Mapping[str, str] | None = None, directory: Path | None = None
    ) -> HostProcess:
        manifest = (directory or tmp_path) / name
        manifest.write_text(text)
        host = HostProcess(manifest, env if env is not None else host_env).start()
        started.append(host)
        return host

    yield make
    for host in started:
        host.stop()


@pytest.fixture
def start_resource() -> Iterator[Callable[..., ResourceContext]]:
    """``start_resource(setup, broker, settings=None, name="resource", directory=None)``: a resource in-process.

    Set up as sghost would (``setup(context)``), connected with threaded networking, its threads
    started; ``directory`` is where relative settings paths point (default: the current one). The
    test drives the timers itself (``context.run_due_timers()``). Cleaned up and stopped after the test.
    """
    started: list[ResourceContext] = []

    def start(
        setup: Callable[[ResourceContext], object],
        broker: MosquittoBroker,
        settings: Mapping[str, Any] | None = None,
        name: str = "resource",
        directory: Path | None = None,
    ) -> ResourceContext:
        resource = Resource(name, broker.host, broker.port)
        context = ResourceContext(name, dict(settings or {}), resource, directory)
        setup(context)
        resource.start(use_threaded_networking=True)
        context.start_threads()
        started.append(context)
        return context

    yield start
    for context in started:
        context.run_cleanups()
        context.resource.stop()


@pytest.fixture
def child_process() -> Iterator[Callable[..., ChildProcess]]:
    """``child_process(argv, env=None)``: a started :class:`ChildProcess`, killed after the test if still alive."""
    started: list[ChildProcess] = []

    def make(argv: Sequence[str], env: Mapping[str, str] | None = None) -> ChildProcess:
        started.append(ChildProcess(argv, env).start())
        return started[-1]

    yield make
    for process in started:
        process.kill()


# ------------------------------------------------------------------ processes, manifests, waiting


def wait_until(
    condition: Callable[[], object],
    timeout: float = 5.0,
    interval: float = 0.05,
    pump: Callable[[], object] | None = None,
    changed: threading.Condition | None = None,
) -> object:
    """Return ``condition()`` once truthy, or its last value after ``timeout``.

    For state that sends no event (a process, a file, a client's flag): between checks it
    calls ``pump`` (a loop-mode client's ``loop``), or waits on ``changed`` (a condition its
    owner notifies) or, lacking both, sleeps ``interval``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        remaining = deadline - time.monotonic()
        if value or remaining <= 0:
            return value
        if pump is not None:
            pump()
        elif changed is not None:
            with changed:
                changed.wait(min(remaining, interval))
        else:
            time.sleep(min(remaining, interval))  # sleep-ok: polling state that has no event to wait on


def manifest_text(
    broker: MosquittoBroker | None,
    resources: str,
    host: str = "sghost",
    port: int | None = None,
    defaults: str = "",
    host_extra: str = "",
    broker_extra: str = "",
) -> str:
    """A manifest for a test broker, with short back-offs; ``resources`` holds the ``[resources.*]`` tables.

    ``port`` replaces the broker's port (without a broker: port 1, where nothing listens).
    """
    broker_port = port if port is not None else broker.port if broker else 1
    return (
        f'[host]\nname = "{host}"\nhealth_interval = 1.0\n{host_extra}\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {broker_port}\n{broker_extra}\n'
        f"[defaults]\nbackoff_initial = 0.2\nbackoff_max = 1.0\nstop_timeout = 3.0\n{defaults}\n"
        f"{resources}\n"
    )


def sghost_environment(**extra: str) -> dict[str, str]:
    """This process's environment, unbuffered output, plus ``extra``: for the sghost processes a test starts."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def run_sghost(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``python -m sghost ARGS`` to completion, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "sghost", *args],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else sghost_environment(),
        timeout=timeout,
    )


class LineReader:
    """Reads a text stream line by line in a thread; a test waits for a line that contains a text."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self) -> str:
        """Every line read so far, as one text."""
        with self._changed:
            return "\n".join(self.lines)

    def wait_line(self, text: str, timeout: float = 10.0, count: int = 1, exact: bool = False) -> str:
        """Wait until ``count`` lines contain ``text`` (or are ``text``, with ``exact``); return the last of them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if (line == text if exact else text in line)]
                if len(found) >= count:
                    return found[count - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"line {text!r} (x{count}) not seen within {timeout} s:\n{self.text()}")
                self._changed.wait(min(remaining, 0.2))

    def join(self, timeout: float = 5.0) -> None:
        """Wait until the stream ended (the process closed it) and every line is read."""
        self._thread.join(timeout)


class ChildProcess:
    """A command in its own process group, as a shell or systemd starts one; its output lines are collected.

    Standard output and standard error are read together into :attr:`lines`.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else sghost_environment()
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None
        self._reader: LineReader | None = None

    def start(self) -> ChildProcess:
        """Start the command in a new session (its own process group) and read its output."""
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._reader = LineReader(self.process.stdout)
        return self

    @property
    def pid(self) -> int:
        """The process id, which is also its process group's."""
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def lines(self) -> list[str]:
        """Every line printed so far (the live list: index it to see what came after a point)."""
        assert self._reader is not None, "not started"
        return self._reader.lines

    def log(self) -> str:
        """Everything printed so far, one line per line (for an assertion's message)."""
        return self._reader.text() if self._reader is not None else ""

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1, exact: bool = False) -> str:
        """Wait until ``text`` appears in ``count`` output lines; return the last such line."""
        assert self._reader is not None, "not started"
        return self._reader.wait_line(text, timeout, count, exact)

    def descendants(self) -> list[psutil.Process]:
        """Its children and their children, as they are now (none once it ended)."""
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process itself (``kill PID``)."""
        os.kill(self.pid, signum)

    def ctrl_c(self) -> None:
        """What a terminal does on Ctrl-C: SIGINT to every process of the (foreground) group."""
        os.killpg(self.pid, signal.SIGINT)

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the exit; return its code once every line it printed is read."""
        assert self.process is not None, "not started"
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL the whole tree if it does not end within ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        family = self.descendants()
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(family)
            return self.wait(5)

    def kill(self, family: list[psutil.Process] | None = None) -> None:
        """SIGKILL the process, its group and ``family`` (its descendants, by default as they are now)."""
        if self.process is None or self.process.poll() is not None:
            return
        for process in [*(family if family is not None else self.descendants()), psutil.Process(self.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(5)


class HostProcess(ChildProcess):
    """``sghost start -c <manifest>`` as a child process whose log lines are collected."""

    def __init__(self, manifest: Path, env: Mapping[str, str] | None = None) -> None:
        super().__init__([sys.executable, "-m", "sghost", "start", "-c", str(manifest)], env)
        self.manifest = manifest

    def start(self) -> HostProcess:
        """Start ``sghost start``; its log lines are collected from now on."""
        super().start()
        return self
