"""A scripted stand-in for a gateway's deployment side, for the operator CLI's tests only.

It is NOT sghost's gateway: it does not apply anything. It receives documents on
``<prefix>command/<host>/deploy`` like a gateway, checks their signature when
given trusted keys, and publishes a scripted sequence of retained progress
documents on ``<prefix>data/<host>/deployment``. The end-to-end tests against
the real gateway replace it once both sides are merged.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sghost.deploy import document
from sghost.deploy.document import Deployment, DocumentError
from sghost.host.broker import AmqttBroker, MosquittoBroker

APPLIED = ("received", "installing", "applying", "verifying", "successful")
ROLLED_BACK = ("received", "installing", "applying", "verifying", "rolling-back", "rolled-back")


class ScriptedGateway:
    """Answers each new document with ``script`` (state names), as a gateway would publish them.

    A document whose signature no trusted key verifies is answered ``rejected``.
    A document with an id already seen publishes nothing (a re-delivery).
    """

    def __init__(
        self,
        broker: MosquittoBroker | AmqttBroker,
        host: str,
        script: Sequence[str] = APPLIED,
        prefix: str = "",
        trusted_keys: Sequence[Any] = (),
        reason: str = "scripted failure",
        on_document: Callable[[Deployment], None] | None = None,
        client_setup: Callable[[mqtt.Client], None] | None = None,
    ) -> None:
        """``on_document(document)`` runs (in the client's thread) for each document before any answer;
        ``client_setup(client)`` before connecting (TLS, credentials)."""
        self.host, self.prefix, self.script, self.reason = host, prefix, tuple(script), reason
        self.trusted_keys = list(trusted_keys)
        self.generation = 1
        self.documents: list[Deployment] = []
        self._seen: set[str] = set()
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda client, *args: client.subscribe(f"{prefix}command/{host}/deploy", 1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.broker = broker
        self.on_document = on_document
        if client_setup is not None:
            client_setup(self.client)

    def start(self) -> ScriptedGateway:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise TimeoutError(f"scripted gateway {self.host} could not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_state(self, deployment_id: str, sequence: int, state: str, reason: str | None = None) -> None:
        """Publish one retained progress document (also used to plant a stale one)."""
        progress = {
            "id": deployment_id, "sequence": sequence, "state": state, "reason": reason,
            "generation": self.generation, "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        self.client.publish(f"{self.prefix}data/{self.host}/deployment", json.dumps(progress), qos=1, retain=True)

    def wait_for_documents(self, count: int, timeout: float = 10.0) -> list[Deployment]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.documents) >= count, timeout)
            return list(self.documents)

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return
        try:
            received = document.parse(message.payload)
        except DocumentError:
            return
        with self._changed:
            self.documents.append(received)
            self._changed.notify_all()
        if self.on_document is not None:
            self.on_document(received)
        if received.id in self._seen:
            return
        self._seen.add(received.id)
        if self.trusted_keys:
            try:
                document.verify(received, self.trusted_keys)
            except DocumentError as error:
                self.publish_state(received.id, received.sequence, "received")
                self.publish_state(received.id, received.sequence, "rejected", str(error))
                return
        for state in self.script:
            failing = state in ("rejected", "failed", "rolled-back")
            if state == "successful":
                self.generation += 1
            self.publish_state(received.id, received.sequence, state, self.reason if failing else None)
