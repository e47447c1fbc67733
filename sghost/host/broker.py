"""A private, loopback-only MQTT broker: sghost's embedded broker and the tests' broker.

``mosquitto`` from PATH (or /usr/sbin) is run with a generated configuration.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

# shutil and tempfile (with bz2 and lzma, about 1 MiB) are imported where they are used:
# the supervisor imports this module, but needs them only when it runs an embedded broker.

LOOPBACK = "127.0.0.1"

INSTALL_HINT = (
    "no MQTT broker found for the embedded broker: install mosquitto "
    "(Debian/Raspberry Pi OS: 'apt-get install mosquitto'), or 'pip install sghost[broker]' for amqtt, "
    "or set [broker] embedded = false and point [broker] host/port at a running broker"
)


UPLINK_HINT = (
    "[uplink] needs mosquitto as the embedded broker (it is the bridge): install mosquitto "
    "(Debian/Raspberry Pi OS: 'apt-get install mosquitto'), or remove [uplink]"
)


class BrokerError(RuntimeError):
    """The broker could not be started."""


def own_user_line() -> str:
    """The mosquitto ``user`` line that keeps the broker running as this process's user.

    mosquitto started as root otherwise drops to user ``mosquitto``, which cannot
    read or write the generated files in a private directory.
    """
    return f"user {pwd.getpwuid(os.geteuid()).pw_name}"


def find_mosquitto() -> str | None:
    """Return the path of the mosquitto executable, or ``None``."""
    import shutil

    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


_EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_CHOSEN_PORT = 10000  # above every well-known broker port (1883, 4222, 5672, 8080)
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int] | None:
    try:
        low, high = (int(part) for part in _EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that nothing uses right now.

    The port is chosen below the kernel's ephemeral range where there is room:
    a port from that range can be taken, between this call and the caller's
    ``bind``, as the local end of any outgoing connection (a resource connecting
    to its broker, say). Ports already handed out by this process are not
    handed out again.
    """
    import random

    ephemeral = _ephemeral_range()
    if ephemeral is not None and ephemeral[0] - _LOWEST_CHOSEN_PORT > 1000:
        candidates = random.sample(range(_LOWEST_CHOSEN_PORT, ephemeral[0]), 200)
        for port in candidates:
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Wait until something accepts TCP connections on ``host:port``; return whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.01)  # the broker is starting; nothing to wait on but the port itself
    return False


class MosquittoBroker:
    """A mosquitto process on a loopback port, with a generated configuration.

    :param port: the port; a free one is chosen when ``None``.
    :param extra_config: lines appended to the listener's configuration
        (TLS, password file, ACL), e.g. ``["require_certificate true"]``.
    :param allow_anonymous: whether clients without a username may connect.
    """

    def __init__(
        self,
        port: int | None = None,
        extra_config: list[str] | None = None,
        allow_anonymous: bool = True,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        executable = find_mosquitto()
        if executable is None:
            raise BrokerError(INSTALL_HINT)
        self.executable = executable
        self.host = LOOPBACK
        self.port = port if port is not None else free_port()
        self.extra_config = list(extra_config or [])
        self.allow_anonymous = allow_anonymous
        self._own_workdir = workdir is None
        import tempfile

        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sghost-broker-"))
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def config_text(self) -> str:
        has_persistence = any(line.startswith("persistence ") for line in self.extra_config)
        persistence = [] if has_persistence else ["persistence false"]
        lines = [
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            *persistence,
            f"log_dest file {self.log_path}",
            "log_type all",
            "connection_messages true",
            f"listener {self.port} {self.host}",
            "set_tcp_nodelay true",
            own_user_line(),
            *self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.touch(mode=0o600)  # it may hold the uplink's password
        self.config_path.write_text(self.config_text())
        self.process = subprocess.Popen(
            [self.executable, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(self._failure_text())
            if wait_for_port(self.host, self.port, 0.2):
                return
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker by its PID and wait until it has exited."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if process.stderr:
            process.stderr.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start the broker on the same port, as a short outage does."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_workdir:
            import shutil

            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _failure_text(self) -> str:
        stderr = self.process.stderr.read().decode(errors="replace") if self.process and self.process.stderr else ""
        detail = (stderr.strip() or self.log_text().strip()).splitlines()[-3:]
        return f"mosquitto exited at start ({self.config_path}): " + " | ".join(detail)

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class AmqttBroker:
    """amqtt (pure Python, MQTT 3.1.1 only) as a fallback when mosquitto is not installed."""

    def __init__(self, executable: str, port: int, workdir: Path) -> None:
        self.executable = executable
        self.host = LOOPBACK
        self.port = port
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        config = self.workdir / "amqtt.yaml"
        config.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "auth:\n  allow-anonymous: true\n"
        )
        self.process = subprocess.Popen(
            [self.executable, "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_for_port(self.host, self.port, timeout):
            self.stop()
            raise BrokerError(f"amqtt did not listen on {self.host}:{self.port} within {timeout} s")

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        self.process = None


def find_amqtt() -> str | None:
    """Return the path of amqtt's broker command, also when only this interpreter's venv has it."""
    beside_python = Path(sys.executable).with_name("amqtt")
    import shutil

    return shutil.which("amqtt") or (str(beside_python) if os.access(beside_python, os.X_OK) else None)


class EmbeddedBroker:
    """sghost's own loopback broker: mosquitto when installed, else amqtt, else a clear error.

    :param candidates: the implementations to try, in order.
    """

    def __init__(
        self,
        port: int,
        workdir: str | os.PathLike[str] | None = None,
        candidates: tuple[str, ...] = ("mosquitto", "amqtt"),
        extra_config: list[str] | None = None,
    ) -> None:
        self.extra_config = list(extra_config or [])
        """mosquitto configuration lines (the uplink's bridge); only mosquitto is tried when set."""
        if self.extra_config:
            candidates = ("mosquitto",)
        self.port = port
        self.host = LOOPBACK
        import tempfile

        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sghost-embedded-"))
        self.candidates = candidates
        self.kind = ""
        self._impl: MosquittoBroker | AmqttBroker | None = None

    def start(self) -> None:
        if port_in_use(self.host, self.port):
            raise BrokerError(
                f"cannot start the embedded broker: port {self.port} on {self.host} is already in use "
                "(another broker?); set [broker] port to a free port, or embedded = false to use that broker"
            )
        for candidate in self.candidates:
            if candidate == "mosquitto" and find_mosquitto() is not None:
                broker = MosquittoBroker(self.port, extra_config=self.extra_config, workdir=self.workdir)
                self._impl, self.kind = broker, "mosquitto"
                break
            amqtt = find_amqtt() if candidate == "amqtt" else None
            if amqtt is not None:
                self._impl, self.kind = AmqttBroker(amqtt, self.port, self.workdir), "amqtt"
                break
        else:
            raise BrokerError(UPLINK_HINT if self.extra_config else INSTALL_HINT)
        self._impl.start()

    def stop(self) -> None:
        if self._impl is not None:
            self._impl.stop()
            self._impl = None
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)
