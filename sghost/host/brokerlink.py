"""Where the processes connect: the embedded broker (with the uplink bridge) or the manifest's, and their specs.

The supervisor itself never speaks MQTT; it tells each process (a resource or
the meta-resource) where the broker is and how to log in, in its ChildSpec.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sghost.config.manifest import BrokerConfig, HostConfig, ResourceConfig
from sghost.health.deployrelay import DEPLOY_COMMAND
from sghost.host import uplinkbridge
from sghost.host.broker import BrokerError, EmbeddedBroker
from sghost.process.spec import META, ChildSpec

log = logging.getLogger("sghost")

COMMANDS = ("start", "stop", "restart", "rebirth")
"""What the control socket and, with ``remote_control``, ``command/<host>/<op>`` accept."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str | tuple[str, ...]
    port: int
    protocol: str


class BrokerLink:
    """Starts the embedded broker when configured, and builds every process's ChildSpec."""

    def __init__(self, config: Callable[[], HostConfig]) -> None:
        self.config = config
        self.embedded: EmbeddedBroker | None = None
        self.address: BrokerAddress | None = None
        self.site_dir: str | None = None
        """The current generation's packages (deployments), given to every resource process started from now on."""
        self.deploy_command = False
        """Whether the meta-resource offers ``command/<host>/deploy`` (``[deploy] enabled``)."""

    def start(self) -> BrokerAddress:
        """Start the embedded broker if ``[broker] embedded``; raises ``BrokerError`` when it cannot."""
        broker = self.config().broker
        if broker.embedded:
            self.embedded = EmbeddedBroker(broker.port, workdir=None, extra_config=self._uplink_lines())
            self.embedded.start()
            log.info("embedded broker (%s) on %s:%d", self.embedded.kind, self.embedded.host, self.embedded.port)
        self.address = self.address_for(broker)
        return self.address

    def follow(self, broker: BrokerConfig) -> None:
        """A new ``[broker]`` table applies to the processes started from now on."""
        self.address = self.address_for(broker)

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()

    def restart_embedded(self) -> None:
        """Start the embedded broker again with the current ``[uplink]`` (a deployment changed the bridge).

        Processes keep running and reconnect; the broker's own persistence keeps what the bridge had queued.
        """
        if self.embedded is None:
            return
        self.embedded.stop()
        self.embedded = EmbeddedBroker(self.config().broker.port, workdir=None, extra_config=self._uplink_lines())
        try:
            self.embedded.start()
        except BrokerError as error:
            log.error("the embedded broker did not start again: %s", error)

    def _uplink_lines(self) -> list[str]:
        config = self.config()
        if config.uplink is None:
            return []
        uplink = config.uplink
        log.info(
            "uplink to %s under %s (queued in %s)",
            ", ".join(f"{h}:{p}" for h, p in uplink.addresses), uplink.remote_prefix, uplink.state_dir,
        )
        return uplinkbridge.config_lines(uplink, config.name)

    def address_for(self, broker: BrokerConfig) -> BrokerAddress:
        """Where resources connect: the manifest's broker, or the embedded one (amqtt speaks MQTT 3.1.1 only)."""
        if not broker.embedded or self.embedded is None:
            return BrokerAddress(broker.host, broker.port, broker.protocol)
        protocol = broker.protocol if self.embedded.kind == "mosquitto" else "MQTTv311"
        return BrokerAddress(self.embedded.host, self.embedded.port, protocol)

    def meta_resource_spec(self) -> ChildSpec:
        config = self.config()
        spec = self._spec(config.name, "", {}, config.broker.certificate_directory)
        commands: tuple[str, ...] = COMMANDS if config.remote_control else ()
        if self.deploy_command:
            commands = (*commands, DEPLOY_COMMAND)
        uplink_topics: tuple[str, ...] = ()
        if config.uplink is not None:
            uplink_topics = (uplinkbridge.state_topic(config.name), *uplinkbridge.SYS_QUEUED_TOPICS)
        return dataclasses.replace(spec, role=META, commands=commands, uplink_topics=uplink_topics)

    def child_spec(self, resource: ResourceConfig) -> ChildSpec:
        certificates = resource.certificate_directory or self.config().broker.certificate_directory
        spec = self._spec(resource.name, resource.type, dict(resource.settings), certificates)
        return dataclasses.replace(
            spec, watchdog=resource.policy.watchdog, environment=dict(resource.environment),
            user=resource.user, group=resource.group, site_dir=self.site_dir,
        )

    def _spec(self, name: str, type_name: str, settings: dict[str, Any], certificates: Any) -> ChildSpec:
        config = self.config()
        broker = config.broker
        assert self.address is not None
        return ChildSpec(
            name=name,
            type_name=type_name,
            settings=settings,
            host=self.address.host,
            port=self.address.port,
            certificate_directory=str(certificates) if certificates else None,
            protocol=self.address.protocol,
            qos=broker.qos,
            keepalive=broker.keepalive,
            username=broker.username,
            password=broker.read_password(),
            tls_insecure=broker.tls_insecure,
            base_directory=str(config.path.parent),
        )
