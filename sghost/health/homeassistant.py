"""Home Assistant MQTT discovery, published by the meta-resource (``[homeassistant] discovery = true``).

The first half is pure: it turns names into discovery topics and config
payloads, following Home Assistant's MQTT discovery format (topic
``<prefix>/<component>/<node_id>/<object_id>/config``, ids of
``[a-zA-Z0-9_-]``, ``unique_id``, ``device``, ``origin``, ``availability``).
The second half, :class:`Discovery`, wires it to the meta-resource's paho
client: it follows the resources' ``dataavailable``/``commandavailable``
announcements, publishes the configs retained with QoS 1, removes them with
an empty retained payload, and publishes everything again when Home
Assistant announces itself on ``<prefix>/status``.

One device for the gateway (the meta-resource) and one per resource, whose
``via_device`` is the gateway. See docs/homeassistant.md.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sgframework.constants import (
    PAYLOAD_FALSE,
    PAYLOAD_TRUE,
    PREFIX_COMMAND,
    PREFIX_COMMANDAVAILABLE,
    PREFIX_DATA,
    PREFIX_DATAAVAILABLE,
    PREFIX_RESOURCEAVAILABLE,
    SUFFIX_PRESENCE,
)
from sghost.health.states import STATES

ORIGIN_NAME = "sghost"
SUPPORT_URL = "https://pypi.org/project/sghost/"
DISCOVERY_QOS = 1
CLASSIFY_TIMEOUT = 3.0
"""Seconds to wait for a command's first value (its default) before offering it as text."""
SETTLE_TIME = 2 * CLASSIFY_TIMEOUT
"""Seconds after which a retained signal config from before that no announcement claimed is removed."""

log = logging.getLogger("sghost.homeassistant")


# ---------------------------------------------------------------------------
# Ids: resource and signal names may hold any character but '/', '+', '#', NUL


def encode_id(name: str) -> str:
    """``name`` as ``[a-zA-Z0-9_]``: letters and digits as they are, every other byte as ``_`` + two hex digits.

    ``_`` and ``-`` are escaped too, so the mapping is injective (``roof.sign``
    is ``roof_2esign``, ``roof_sign`` is ``roof_5fsign``) and ``-`` is free to
    join encoded parts into one id.
    """
    return "".join(char if char.isascii() and char.isalnum() else _escape(char) for char in name)


def _escape(char: str) -> str:
    return "".join(f"_{byte:02x}" for byte in char.encode("utf-8"))


def decode_id(encoded: str) -> str:
    """The inverse of :func:`encode_id`; raises ValueError for text it cannot have made."""
    data = bytearray()
    index = 0
    while index < len(encoded):
        char = encoded[index]
        if char == "_":
            data.append(int(encoded[index + 1 : index + 3], 16))
            index += 3
        elif char.isascii() and char.isalnum():
            data.extend(char.encode())
            index += 1
        else:
            raise ValueError(f"not an encoded id: {encoded!r}")
    return data.decode("utf-8")


@dataclass(frozen=True)
class Gateway:
    """What every config of one sghost host shares."""

    prefix: str
    host: str
    version: str
    remote_control: bool = False

    @property
    def node_id(self) -> str:
        return encode_id(self.host)

    @property
    def identifier(self) -> str:
        return f"sghost-{self.node_id}"

    @property
    def presence(self) -> dict[str, str]:
        return _availability(self.host)


@dataclass(frozen=True)
class Entity:
    """One discovery config: where it goes and what it says."""

    component: str
    object_id: str
    payload: dict[str, Any]

    def topic(self, gateway: Gateway) -> str:
        return discovery_topic(gateway.prefix, self.component, gateway.node_id, self.object_id)


def discovery_topic(prefix: str, component: str, node_id: str, object_id: str) -> str:
    return f"{prefix}/{component}/{node_id}/{object_id}/config"


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _availability(name: str) -> dict[str, str]:
    """One entry of an ``availability`` list: the Secure Gateway's presence payloads, not Home Assistant's."""
    return {
        "topic": f"{PREFIX_RESOURCEAVAILABLE}/{name}/{SUFFIX_PRESENCE}",
        "payload_available": PAYLOAD_TRUE,
        "payload_not_available": PAYLOAD_FALSE,
    }


def _origin(gateway: Gateway) -> dict[str, str]:
    return {"name": ORIGIN_NAME, "sw_version": gateway.version, "support_url": SUPPORT_URL}


def gateway_device(gateway: Gateway) -> dict[str, Any]:
    return {
        "identifiers": [gateway.identifier],
        "name": gateway.host,
        "manufacturer": "sghost",
        "model": "sghost gateway",
        "sw_version": gateway.version,
    }


def resource_device(gateway: Gateway, resource: str, type_name: str, version: str) -> dict[str, Any]:
    device = {
        "identifiers": [f"{gateway.identifier}-res-{encode_id(resource)}"],
        "name": resource,
        "model": type_name,
        "sw_version": version,
        "via_device": gateway.identifier,
    }
    return {key: value for key, value in device.items() if value}  # no version known: none shown


def _entity(
    gateway: Gateway, component: str, object_id: str, device: dict[str, Any], availability: list[dict[str, str]],
    **options: Any,
) -> Entity:
    payload = {
        "unique_id": f"{gateway.identifier}-{object_id}",
        "device": device,
        "origin": _origin(gateway),
        "availability": availability,
        "availability_mode": "all",
        "qos": DISCOVERY_QOS,
        **options,
    }
    return Entity(component, object_id, payload)


def gateway_entities(gateway: Gateway) -> list[Entity]:
    """The gateway device: its CPU and memory use, from the ``health`` document."""
    device = gateway_device(gateway)
    health = f"{PREFIX_DATA}/{gateway.host}/health"
    available = [gateway.presence]
    common = {"state_topic": health, "unit_of_measurement": "%", "state_class": "measurement",
              "entity_category": "diagnostic"}
    return [
        _entity(gateway, "sensor", "host-cpu", device, available, name="CPU",
                value_template="{{ value_json.cpu }}", icon="mdi:cpu-64-bit", **common),
        _entity(gateway, "sensor", "host-memory", device, available, name="Memory",
                value_template="{{ value_json.memory }}", icon="mdi:memory", **common),
    ]


def health_entities(gateway: Gateway, resource: str, type_name: str, version: str) -> list[Entity]:
    """A resource's device as the gateway reports it: running, state, restarts, CPU, memory, last error.

    Their availability is the host's presence alone: the gateway publishes
    them, and they must stay readable (``fatal``) and the restart button
    usable exactly when the resource itself is gone.
    """
    device = resource_device(gateway, resource, type_name, version)
    base = f"res-{encode_id(resource)}"
    topic = f"{PREFIX_DATA}/{gateway.host}/{resource}_"
    available = [gateway.presence]
    entities = [
        _entity(gateway, "binary_sensor", f"{base}-running", device, available, name="Running",
                device_class="running", state_topic=topic + "state",
                value_template="{{ 'ON' if value == 'running' else 'OFF' }}", payload_on="ON", payload_off="OFF"),
        _entity(gateway, "sensor", f"{base}-state", device, available, name="State", device_class="enum",
                options=list(STATES), state_topic=topic + "state", icon="mdi:state-machine"),
        _entity(gateway, "sensor", f"{base}-restarts", device, available, name="Restarts",
                state_topic=topic + "restarts", state_class="total_increasing", icon="mdi:restart"),
        _entity(gateway, "sensor", f"{base}-cpu", device, available, name="CPU", state_topic=topic + "cpu",
                unit_of_measurement="%", state_class="measurement", entity_category="diagnostic",
                icon="mdi:cpu-64-bit"),
        _entity(gateway, "sensor", f"{base}-memory", device, available, name="Memory", state_topic=topic + "memory",
                unit_of_measurement="MiB", device_class="data_size", state_class="measurement",
                entity_category="diagnostic"),
        _entity(gateway, "sensor", f"{base}-error", device, available, name="Last error",
                state_topic=topic + "error", icon="mdi:alert-circle-outline"),
    ]
    if gateway.remote_control:
        entities.append(
            _entity(gateway, "button", f"{base}-restart", device, available, name="Restart", device_class="restart",
                    command_topic=f"{PREFIX_COMMAND}/{gateway.host}/restart", payload_press=resource)
        )
    return entities


def _signal_availability(gateway: Gateway, resource: str) -> list[dict[str, str]]:
    """The resource's presence and the host's: both must be ``True`` (``availability_mode: all``)."""
    return [_availability(resource), gateway.presence]


def data_entity(gateway: Gateway, resource: str, type_name: str, version: str, signal: str) -> Entity:
    """A ``sensor`` for an announced ``data/<resource>/<signal>``."""
    return _entity(
        gateway, "sensor", f"res-{encode_id(resource)}-data-{encode_id(signal)}",
        resource_device(gateway, resource, type_name, version), _signal_availability(gateway, resource),
        name=signal, state_topic=f"{PREFIX_DATA}/{resource}/{signal}",
    )


def command_entity(
    gateway: Gateway, resource: str, type_name: str, version: str, signal: str, boolean: bool
) -> Entity:
    """A ``switch`` (a boolean default) or a ``text`` for an announced ``command/<resource>/<signal>``.

    The state is the command's echo on ``data/<resource>/<signal>``.
    """
    options: dict[str, Any] = {
        "name": signal,
        "command_topic": f"{PREFIX_COMMAND}/{resource}/{signal}",
        "state_topic": f"{PREFIX_DATA}/{resource}/{signal}",
    }
    if boolean:
        options.update(payload_on=PAYLOAD_TRUE, payload_off=PAYLOAD_FALSE)
    return _entity(
        gateway, "switch" if boolean else "text", f"res-{encode_id(resource)}-command-{encode_id(signal)}",
        resource_device(gateway, resource, type_name, version), _signal_availability(gateway, resource), **options,
    )


def resource_of(object_id: str) -> str | None:
    """The resource an object id of :func:`health_entities` or a signal entity belongs to; None for others."""
    parts = object_id.split("-")
    if len(parts) < 3 or parts[0] != "res":
        return None
    try:
        return decode_id(parts[1])
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# The MQTT side


@dataclass(frozen=True)
class ResourceInfo:
    type_name: str = ""
    version: str = ""


class Discovery:
    """Publishes and withdraws the discovery configs of one host through the meta-resource's paho client.

    Thread safe: :meth:`configure` comes from the meta-resource's main loop,
    the MQTT callbacks from paho's network thread.
    """

    def __init__(self, client: Any, gateway: Gateway) -> None:
        self.client = client
        self.gateway = gateway
        self.resources: dict[str, ResourceInfo] = {}
        self._lock = threading.RLock()
        self._wanted: dict[str, bytes] = {}
        """Every config topic that should exist, with its payload."""
        self._data: set[tuple[str, str]] = set()
        self._commands: set[tuple[str, str]] = set()
        self._kinds: dict[tuple[str, str], bool] = {}
        """Whether each command's default was True/False, once its first value was seen."""
        self._waiting: dict[tuple[str, str], float] = {}
        self._connected = False
        self._enabled = True
        self._unclaimed: dict[str, float] = {}
        """Retained signal configs from before, kept for SETTLE_TIME in case their announcement claims them."""

    # ------------------------------------------------------------ control

    def configure(self, gateway: Gateway, resources: Mapping[str, ResourceInfo]) -> None:
        """The manifest's resources (and the host's settings) as they are now; withdraw what left."""
        with self._lock:
            self._enabled = True
            self.gateway = gateway
            self.resources = dict(resources)
            for key in [key for key in self._data | self._commands if key[0] not in self.resources]:
                self._data.discard(key)
                self._commands.discard(key)
                self._waiting.pop(key, None)
            self._refresh()

    def withdraw_all(self) -> None:
        """Discovery was turned off: remove every config this host published."""
        with self._lock:
            self._enabled = False
            self.resources = {}
            self._data.clear()
            self._commands.clear()
            self._waiting.clear()
            self._refresh()

    def connected(self) -> None:
        """The meta-resource (re)connected: subscribe and publish every config again."""
        client = self.client
        prefix, node = self.gateway.prefix, self.gateway.node_id
        client.message_callback_add(f"{prefix}/status", self._on_birth)
        client.message_callback_add(f"{PREFIX_DATAAVAILABLE}/+/+", self._on_data_announcement)
        client.message_callback_add(f"{PREFIX_COMMANDAVAILABLE}/+/+", self._on_command_announcement)
        client.message_callback_add(f"{prefix}/+/{node}/+/config", self._on_own_config)
        client.message_callback_add(f"{PREFIX_DATA}/+/+", self._on_command_value)
        # Commands first: the retained commandavailable/ of an echoed command then comes before its
        # dataavailable/, and the echo gets no sensor of its own beside its switch or text.
        topics = [f"{prefix}/status", f"{PREFIX_COMMANDAVAILABLE}/+/+", f"{PREFIX_DATAAVAILABLE}/+/+",
                  f"{prefix}/+/{node}/+/config"]
        client.subscribe([(topic, DISCOVERY_QOS) for topic in topics])
        with self._lock:
            self._connected = True
            for resource, signal in self._commands | set(self._waiting):
                client.subscribe(f"{PREFIX_DATA}/{resource}/{signal}", DISCOVERY_QOS)
            self._publish_all()

    def close(self) -> None:
        """Withdraw every config and stop listening (discovery turned off, or its prefix changed)."""
        self.withdraw_all()
        prefix, node = self.gateway.prefix, self.gateway.node_id
        for topic in (f"{prefix}/status", f"{PREFIX_DATAAVAILABLE}/+/+", f"{PREFIX_COMMANDAVAILABLE}/+/+",
                      f"{prefix}/+/{node}/+/config", f"{PREFIX_DATA}/+/+"):
            self.client.message_callback_remove(topic)
        self.client.unsubscribe([f"{prefix}/status", f"{prefix}/+/{node}/+/config"])

    def disconnected(self) -> None:
        with self._lock:
            self._connected = False

    def check(self) -> None:
        """From the main loop: offer as ``text`` each command whose default did not come in time."""
        now = time.monotonic()
        with self._lock:
            for topic, since in list(self._unclaimed.items()):
                if now - since >= SETTLE_TIME:
                    del self._unclaimed[topic]
                    if topic not in self._wanted:
                        log.info("removing the stale Home Assistant config %s", topic)
                        self._publish(topic, b"")
            late = [key for key, since in self._waiting.items() if now - since >= CLASSIFY_TIMEOUT]
            for key in late:
                del self._waiting[key]
                self._kinds.setdefault(key, False)
            if late:
                self._refresh()

    # ----------------------------------------------------------- callbacks

    def _on_birth(self, client: Any, userdata: Any, message: Any) -> None:
        if message.payload.decode("utf-8", "replace") == "online":
            log.info("Home Assistant is online: publishing the discovery configs again")
            with self._lock:
                self._publish_all()

    def _on_data_announcement(self, client: Any, userdata: Any, message: Any) -> None:
        self._announcement(message, self._data, command=False)

    def _on_command_announcement(self, client: Any, userdata: Any, message: Any) -> None:
        self._announcement(message, self._commands, command=True)

    def _announcement(self, message: Any, signals: set[tuple[str, str]], command: bool) -> None:
        _prefix, resource, signal = message.topic.split("/")
        available = message.payload.decode("utf-8", "replace") == PAYLOAD_TRUE
        key = (resource, signal)
        with self._lock:
            if resource not in self.resources or available == (key in signals):
                return
            if available:
                signals.add(key)
                if command and key not in self._kinds:
                    self._waiting[key] = time.monotonic()
                if command and self._connected:
                    self.client.subscribe(f"{PREFIX_DATA}/{resource}/{signal}", DISCOVERY_QOS)
            else:
                signals.discard(key)
                self._waiting.pop(key, None)
            self._refresh()

    def _on_command_value(self, client: Any, userdata: Any, message: Any) -> None:
        _prefix, resource, signal = message.topic.split("/")
        key = (resource, signal)
        with self._lock:
            if key not in self._waiting:
                return  # classified already: later values are echoes
            value = message.payload.decode("utf-8", "replace")
            self._kinds[key] = value in (PAYLOAD_TRUE, PAYLOAD_FALSE)
            self._waiting.pop(key, None)
            self._refresh()

    def _on_own_config(self, client: Any, userdata: Any, message: Any) -> None:
        """A retained config of this host from before: clear it unless it is still wanted."""
        if not message.retain or not message.payload:
            return
        object_id = message.topic.split("/")[-2]
        with self._lock:
            if message.topic in self._wanted:
                return
            resource = resource_of(object_id)
            is_signal = "-data-" in object_id or "-command-" in object_id
            if is_signal and resource is not None and resource in self.resources:
                # A signal of a current resource: its announcement decides, within SETTLE_TIME.
                self._unclaimed[message.topic] = time.monotonic()
                self._learn_kind(message.topic)
                return
            log.info("removing the stale Home Assistant config %s", message.topic)
            self.client.publish(message.topic, b"", qos=DISCOVERY_QOS, retain=True)

    def _learn_kind(self, topic: str) -> None:
        """A switch or text config from before tells what that command's default was (it may not be retained)."""
        _prefix, component, _node, object_id, _config = topic.split("/")
        parts = object_id.split("-")
        if component not in ("switch", "text") or len(parts) != 4 or parts[2] != "command":
            return
        try:
            key = (decode_id(parts[1]), decode_id(parts[3]))
        except ValueError:
            return
        if key not in self._kinds:
            self._kinds[key] = component == "switch"
            if self._waiting.pop(key, None) is not None:
                self._refresh()

    # ---------------------------------------------------------- publishing

    def _entities(self) -> dict[str, bytes]:
        gateway = self.gateway
        if not self._enabled:
            return {}
        entities = gateway_entities(gateway)
        for name, info in self.resources.items():
            entities += health_entities(gateway, name, info.type_name, info.version)
        for resource, signal in sorted(self._data - self._commands):
            # An echoed command is announced on dataavailable/ too: its switch or text shows the echo already.
            info = self.resources[resource]
            entities.append(data_entity(gateway, resource, info.type_name, info.version, signal))
        for key in sorted(self._commands):
            if key in self._waiting or key not in self._kinds:
                continue
            info = self.resources[key[0]]
            entities.append(command_entity(gateway, key[0], info.type_name, info.version, key[1], self._kinds[key]))
        return {entity.topic(gateway): encode_payload(entity.payload) for entity in entities}

    def _refresh(self) -> None:
        """Publish the configs that are new or changed, clear those no longer wanted."""
        wanted = self._entities()
        for topic in self._wanted.keys() - wanted.keys():
            self._publish(topic, b"")
        for topic, payload in wanted.items():
            if self._wanted.get(topic) != payload:
                self._publish(topic, payload)
        self._wanted = wanted

    def _publish_all(self) -> None:
        self._wanted = self._entities()
        for topic, payload in self._wanted.items():
            self._publish(topic, payload)

    def _publish(self, topic: str, payload: bytes) -> None:
        if self._connected:
            self.client.publish(topic, payload, qos=DISCOVERY_QOS, retain=True)
