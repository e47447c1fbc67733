"""The announcements of a Resource: presence, availability, defaults, retained values, rebirth.

A mixin of :class:`sgframework.Resource`: the state it uses is created by ``Resource.__init__``.
"""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from sgframework import constants
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
from sgframework.topics import build_topic, validate_name


class _Output:
    """An outgoing data signal announced with ``dataavailable`` (a plain class: see ``inbound._Input``)."""

    __slots__ = ("defaultvalue", "last_retained", "send_data_as_retained", "signalname", "topic")

    def __init__(self, signalname: str, defaultvalue: str | None, send_data_as_retained: bool, topic: str) -> None:
        self.signalname = signalname
        self.topic = topic
        """``data/<resource>/<signalname>``, built once: send_data() is the hot path."""
        self.defaultvalue = defaultvalue
        self.send_data_as_retained = send_data_as_retained
        self.last_retained: str | None = None
        """The last value sent retained, for republish() of a signal without a default."""


class Announcements:
    """What a Resource publishes for others to find: presence (and its last will), availability, current values."""

    @property
    def presence_topic(self) -> str:
        """``resourceavailable/<name>/presence``, the topic of the last will."""
        return build_topic(PREFIX_RESOURCEAVAILABLE, self.name, SUFFIX_PRESENCE)

    @property
    def announced_topics(self) -> list[str]:
        """Every ``commandavailable``/``dataavailable`` topic this resource announces (an extension)."""
        with self._state_lock:
            commands = [item for item in self._inputs.values() if item.messagetype == PREFIX_COMMAND]
            data = dict.fromkeys([item.signalname for item in commands if item.echo] + list(self._outputs))
        # An echo is data: like the original, an echoed command is announced on dataavailable/ too.
        return [build_topic(PREFIX_COMMANDAVAILABLE, self.name, item.signalname) for item in commands] + [
            build_topic(PREFIX_DATAAVAILABLE, self.name, signal) for signal in data
        ]

    def register_outgoing_data(
        self, signalname: str, defaultvalue: Any = None, send_data_as_retained: bool = False
    ) -> None:
        """Announce ``data/<name>/<signalname>``; send on it with :meth:`send_data`.

        A ``defaultvalue`` other than ``None`` is published at every (re)connect
        and is updated by :meth:`send_data`.
        """
        validate_name(signalname, "signalname")
        with self._state_lock:
            self._outputs[signalname] = _Output(
                signalname,
                None if defaultvalue is None else str(defaultvalue),
                send_data_as_retained,
                build_topic(PREFIX_DATA, self.name, signalname),
            )
        self._announce_if_connected(build_topic(PREFIX_DATAAVAILABLE, self.name, signalname))

    def unregister_outgoing_data(self, signalname: str) -> None:
        """Forget an outgoing data signal: no more ``dataavailable`` or default for it (an extension)."""
        with self._state_lock:
            self._outputs.pop(signalname, None)

    def _outgoing_topics(self) -> list[str]:
        with self._state_lock:
            echoes = [
                build_topic(PREFIX_DATA, self.name, item.signalname)
                for item in self._inputs.values()
                if item.messagetype == PREFIX_COMMAND and item.echo
            ]
            data = [build_topic(PREFIX_DATA, self.name, name) for name in self._outputs]
        return sorted(set(echoes + data)) + sorted(self.announced_topics) + [self.presence_topic]

    def _configure_will(self, client: mqtt.Client) -> None:
        client.will_set(self.presence_topic, PAYLOAD_FALSE, qos=self.qos, retain=True)

    def _announce(self, client: mqtt.Client) -> None:
        self._publish_tracked(client, self.presence_topic, PAYLOAD_TRUE, retain=True)
        for topic in self.announced_topics:
            self._publish_tracked(client, topic, PAYLOAD_TRUE, retain=True)
        for topic, payload, retain in self._defaults():
            self._publish_tracked(client, topic, payload, retain)

    def _defaults(self) -> list[tuple[str, str, bool]]:
        with self._state_lock:
            commands = [  # as the original: a command's default is its echo's initial value, so echoed only
                (build_topic(PREFIX_DATA, self.name, item.signalname), item.defaultvalue, item.send_echo_as_retained)
                for item in self._inputs.values()
                if item.messagetype == PREFIX_COMMAND and item.echo and item.defaultvalue is not None
            ]
            data = [
                (build_topic(PREFIX_DATA, self.name, out.signalname), out.defaultvalue, out.send_data_as_retained)
                for out in self._outputs.values()
                if out.defaultvalue is not None
            ]
        return commands + data  # type: ignore[return-value]

    def _retained_values(self) -> list[tuple[str, str, bool]]:
        """The last retained value of each signal without a default (what the broker keeps for it)."""
        with self._state_lock:
            echoes = [
                (build_topic(PREFIX_DATA, self.name, item.signalname), item.last_retained_echo, True)
                for item in self._inputs.values()
                if item.defaultvalue is None and item.last_retained_echo is not None
            ]
            data = [
                (build_topic(PREFIX_DATA, self.name, out.signalname), out.last_retained, True)
                for out in self._outputs.values()
                if out.defaultvalue is None and out.last_retained is not None
            ]
        return echoes + data  # type: ignore[return-value]

    def _publish_goodbye(self, client: mqtt.Client) -> None:
        # QoS 1 whatever qos is, as the original: the goodbye must arrive, and stop() waits for it.
        info = client.publish(self.presence_topic, PAYLOAD_FALSE, qos=1, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        if self._use_threaded_networking:
            if self._can_wait_for_room():
                info.wait_for_publish(constants.STOP_WAIT_TIME)
            return
        deadline = time.monotonic() + constants.STOP_WAIT_TIME
        while not info.is_published() and time.monotonic() < deadline and not self._in_network_loop:
            if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def _announce_if_connected(self, topic: str) -> None:
        client = self.mqttclient
        if client is not None and self._connected:
            client.publish(topic, PAYLOAD_TRUE, qos=self.qos, retain=True)

    def republish(self) -> int:
        """Publish again what a new subscriber finds after a (re)connect; return how many messages.

        Presence ``True``, every ``commandavailable``/``dataavailable``
        announcement, and every current value that has one: the default of a
        command or data signal, as updated by the last echo or :meth:`send_data`.
        For a dashboard or bridge that lost its retained state (Sparkplug's
        Rebirth). Nothing is sent, and 0 returned, while not connected.
        """
        client = self.mqttclient
        if client is None or not self._connected:
            return 0
        messages = [(self.presence_topic, PAYLOAD_TRUE, True)]
        messages += [(topic, PAYLOAD_TRUE, True) for topic in self.announced_topics]
        messages += self._defaults() + self._retained_values()
        for topic, payload, retain in messages:
            client.publish(topic, payload, qos=self.qos, retain=retain)
        return len(messages)
