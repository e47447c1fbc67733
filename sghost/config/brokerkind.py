"""What the configured broker kind can carry (``[broker] kind``), checked before anything connects.

nats-server's MQTT listener (2.9) closes the connection on a ``.`` or a space in a
topic and on any QoS 2 publish, and speaks MQTT 3.1.1 only; paho then re-sends the
offending message at every reconnect, an endless loop. So a manifest that would do
that is refused here, with the reason (docs/cluster.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sghost.config.parsing import Problems

NATS_FORBIDDEN = (".", " ")


def nats_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a topic level on nats-server, or None."""
    bad = [repr(char) for char in NATS_FORBIDDEN if char in name]
    if not bad:
        return None
    return f"contains {' and '.join(bad)}, which nats-server does not accept in a topic (it closes the connection)"


def check(problems: Problems, broker: Any, host_name: str, resources: Mapping[str, Any]) -> None:
    """Record what ``broker.kind`` cannot carry: names, QoS and protocol."""
    if broker.kind != "nats":
        return
    if broker.qos > 1:
        problems.add("broker.qos", f"{broker.qos} with kind = \"nats\"; expected 0 or 1 (nats-server has no QoS 2)")
    if broker.protocol != "MQTTv311":
        problems.add(
            "broker.protocol", f'"{broker.protocol}" with kind = "nats"; expected "MQTTv311" (all nats-server speaks)'
        )
    reason = nats_name_problem(host_name)
    if reason is not None:
        problems.add("host.name", f'"{host_name}" {reason}; expected a name without them')
    for name in resources:
        reason = nats_name_problem(name)
        if reason is not None:
            problems.add(f'resources."{name}"', f"the resource name {reason}; expected a name without them")
