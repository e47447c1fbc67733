"""The manifest's ``[uplink]`` table: the embedded broker bridged, with persistence, to a central broker.

An ordinary table module: parsed with the toolkit of :mod:`sghost.config.parsing`,
called from :func:`sghost.config.manifest.load_manifest`. The bridge's mosquitto configuration is
written by :mod:`sghost.host.uplinkbridge`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgframework.addresses import parse_address
from sghost.config import parsing as p
from sghost.config.parsing import Problems

DEFAULT_REMOTE_PORT = 8883
DEFAULT_TOPICS_OUT = ("data/#", "dataavailable/#", "commandavailable/#", "resourceavailable/#")
DEFAULT_TOPICS_IN = ("command/#",)
DEFAULT_MAX_QUEUED_MESSAGES = 100_000
"""Ten minutes at 100 messages a second is 60,000; mosquitto's own default (1,000) loses a 20 s outage at 50 msg/s."""
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024
"""64 MiB: 100,000 messages of up to ~650 bytes; the first of the two bounds reached applies."""
DEFAULT_KEEPALIVE = 60
DEFAULT_RECONNECT_MIN = 2
DEFAULT_RECONNECT_MAX = 30


@dataclass(frozen=True)
class UplinkConfig:
    """The ``[uplink]`` table. Holds the password file's path, never the password."""

    addresses: tuple[tuple[str, int], ...]
    remote_prefix: str
    state_dir: Path
    topics_out: tuple[str, ...] = DEFAULT_TOPICS_OUT
    topics_in: tuple[str, ...] = DEFAULT_TOPICS_IN
    commands_in: bool = True
    certificate_directory: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    tls_insecure: bool = False
    keepalive: int = DEFAULT_KEEPALIVE
    reconnect_min: int = DEFAULT_RECONNECT_MIN
    reconnect_max: int = DEFAULT_RECONNECT_MAX
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES

    def read_password(self) -> str | None:
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").rstrip("\r\n")

    @property
    def incoming(self) -> tuple[str, ...]:
        """The topic patterns brought in from the central broker (none with ``commands_in = false``)."""
        return self.topics_in if self.commands_in else ()


def default_state_dir(host_name: str) -> Path:
    """``/var/lib/sghost/<host>`` for root, else ``$XDG_STATE_HOME/sghost/<host>`` (``~/.local/state``)."""
    if os.geteuid() == 0:
        return Path("/var/lib/sghost") / host_name
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sghost" / host_name


def _addresses(problems: Problems, keypath: str, value: Any) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) for item in items):
        return problems.wrong_type(keypath, value, 'a "host:port" string or a non-empty array of them')
    parsed = []
    for item in items:
        try:
            parsed.append(parse_address(item, DEFAULT_REMOTE_PORT))
        except ValueError as error:
            return problems.add(keypath, f"{error}; expected \"host:port\"")
    return tuple(parsed)


def _topic_patterns(problems: Problems, keypath: str, value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        return problems.wrong_type(keypath, value, 'an array of MQTT topic filters, e.g. ["data/#"]')
    for pattern in value:
        levels = pattern.split("/")
        bad_hash = "#" in pattern and (levels[-1] != "#" or pattern.count("#") > 1)
        bad_plus = any("+" in level and level != "+" for level in levels)
        if bad_hash or bad_plus or " " in pattern:
            return problems.add(
                keypath, f"{p.show(pattern)} is not a topic filter; expected levels without spaces, '#' only last"
            )
    return tuple(value)


def _prefix(problems: Problems, keypath: str, value: Any) -> Any:
    if not isinstance(value, str):
        return problems.wrong_type(keypath, value, 'a string ending in "/", e.g. "gateways/gw1/"')
    if not value.endswith("/") or value.startswith("/") or "+" in value or "#" in value or "//" in value:
        return problems.add(
            keypath, f'{p.show(value)} is not a topic prefix; expected levels ending in "/", without + or #'
        )
    return value


_SPECS: dict[str, p.Parser] = {
    "address": _addresses,
    "remote_prefix": _prefix,
    "state_dir": p.file_path,
    "topics_out": _topic_patterns,
    "topics_in": _topic_patterns,
    "commands_in": p.boolean,
    "certificate_directory": p.file_path,
    "username": p.string,
    "password_file": p.file_path,
    "tls_insecure": p.boolean,
    "keepalive": p.integer(5, 65535),
    "reconnect_min": p.integer(1, 3600),
    "reconnect_max": p.integer(1, 3600),
    "max_queued_messages": p.integer(1),
    "max_queued_bytes": p.integer(1024),
}


def read_uplink(problems: Problems, table: Mapping[str, Any], host_name: str, embedded: bool) -> UplinkConfig | None:
    """Parse ``[uplink]`` (None when absent), recording every problem in ``problems``."""
    if not table:
        return None
    values = p.read_table(problems, ("uplink",), table, _SPECS)
    if not embedded:
        problems.add("uplink", "needs [broker] embedded = true; expected the embedded broker to be bridged")
    if "address" not in table:
        problems.add("uplink", 'missing key "address"; expected address = "central.example.com:8883"')
    if "certificate_directory" in values:
        p.check_certificate_directory(problems, "uplink.certificate_directory", values["certificate_directory"])
    if "password_file" in values:
        p.check_password_file(problems, "uplink.password_file", values["password_file"])
        if "username" not in table:
            problems.add("uplink.password_file", "set without uplink.username; expected uplink.username as well")
    if "state_dir" in values:
        p.check_directory(problems, "uplink.state_dir", values["state_dir"])
    if values.get("reconnect_max", DEFAULT_RECONNECT_MAX) < values.get("reconnect_min", DEFAULT_RECONNECT_MIN):
        problems.add("uplink.reconnect_max", "is less than reconnect_min; expected reconnect_max >= reconnect_min")
    if values.get("tls_insecure"):
        problems.warn("uplink.tls_insecure", "true: the central broker's certificate name is not checked")
    if "address" not in values:
        return None
    remote = [host for host, _port in values["address"] if host not in p.LOOPBACK_HOSTS]
    if remote and "certificate_directory" not in values:
        problems.warn("uplink.certificate_directory", "unset: the uplink to " + ", ".join(remote) + " is not encrypted")
    values["addresses"] = values.pop("address")
    values.setdefault("remote_prefix", f"gateways/{host_name}/")
    values.setdefault("state_dir", default_state_dir(host_name))
    return UplinkConfig(**values)
