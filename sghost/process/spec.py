"""What the supervisor sends through the zygote to start a process: light, picklable data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESOURCE = "resource"
META = "meta"
HEARTBEAT_MAX_INTERVAL = 0.5


@dataclass(frozen=True)
class ChildSpec:
    """Everything a resource process needs, sent by the supervisor through the zygote."""

    name: str
    type_name: str
    settings: dict[str, Any]
    host: str | tuple[str, ...]
    """One broker host name, or several ``host:port`` of a cluster, tried in turn."""
    port: int
    certificate_directory: str | None = None
    protocol: str = "MQTTv311"
    qos: int = 1
    keepalive: int = 10
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_insecure: bool = False
    log_level: str = "INFO"
    role: str = RESOURCE
    """``resource``, or ``meta`` for sghost's own meta-resource process."""
    commands: tuple[str, ...] = ()
    """For the meta-resource: the remote-control commands it accepts."""
    uplink_topics: tuple[str, ...] = ()
    """For the meta-resource: the bridge's local notification topic, then mosquitto's $SYS counters."""
    watchdog: float = 0.0
    """The supervisor's watchdog for this resource; heartbeats are sent only when it is on."""
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """Added to the process's environment (the manifest's ``environment`` and ``env_file``)."""
    base_directory: str | None = None
    """The manifest's directory: relative paths in ``settings`` are relative to it."""
    user: str | None = None
    """The Unix user the process drops to before the plugin's setup (None: stay as sghost's user)."""
    group: str | None = None
    site_dir: str | None = None
    """A deployed generation's packages, first on ``sys.path`` (:mod:`sghost.process.generationsite`)."""

    @property
    def heartbeat_interval(self) -> float | None:
        return min(HEARTBEAT_MAX_INTERVAL, self.watchdog / 4) if self.watchdog > 0 else None
