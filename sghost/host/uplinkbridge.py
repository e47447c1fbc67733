"""The uplink as mosquitto bridge configuration: the embedded broker forwards to the central one.

mosquitto keeps the bridge's session and every message it has not yet delivered
(persistence in ``state_dir``), bounded by ``max_queued_messages`` and
``max_queued_bytes``. At the bound it drops new messages silently; the count is
in ``$SYS/broker/publish/messages/dropped``, which the meta-resource reports.
"""

from __future__ import annotations

from sgframework import constants
from sghost.config.uplink import UplinkConfig

CONNECTION_PREFIX = "sghost-uplink-"
STATE_TOPIC = "$SYS/broker/connection/{client_id}/state"
"""The bridge's notification topic: ``1`` connected, ``0`` not; local only (notifications_local_only)."""
SYS_INTERVAL = 2
"""Seconds between mosquitto's $SYS updates, whose counters give the queued and dropped counts."""
SYS_QUEUED_TOPICS = (
    "$SYS/broker/store/messages/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/publish/messages/dropped",
)


def client_id(host_name: str) -> str:
    """The bridge's client id on the central broker: one per gateway, stable across restarts."""
    return CONNECTION_PREFIX + host_name


def state_topic(host_name: str) -> str:
    return STATE_TOPIC.format(client_id=client_id(host_name))


def broker_lines(uplink: UplinkConfig) -> list[str]:
    """Global options of the embedded broker that the uplink needs (persistence, queue bounds)."""
    return [
        "persistence true",
        f"persistence_location {uplink.state_dir}/",
        "autosave_interval 10",  # mosquitto rewrites its whole database at each save: spare the SD card
        "autosave_on_changes false",
        f"max_queued_messages {uplink.max_queued_messages}",
        f"max_queued_bytes {uplink.max_queued_bytes}",
        "max_inflight_messages 100",
        f"sys_interval {SYS_INTERVAL}",
    ]


def bridge_lines(uplink: UplinkConfig, host_name: str, password: str | None) -> list[str]:
    """The ``connection`` block; ``password`` is read from the password file by the caller."""
    identity = client_id(host_name)
    addresses = " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in uplink.addresses)
    lines = [
        f"connection {identity}",
        f"address {addresses}",
        "round_robin false",
        f"remote_clientid {identity}",
        f"local_clientid {identity}-local",
        "cleansession false",
        "local_cleansession false",
        "bridge_protocol_version mqttv311",
        "try_private false",  # not every central broker understands mosquitto's bridge flag
        "notifications true",
        "notifications_local_only true",
        f"notification_topic {state_topic(host_name)}",
        f"keepalive_interval {uplink.keepalive}",
        f"restart_timeout {uplink.reconnect_min} {uplink.reconnect_max}",
        "start_type automatic",
        "bridge_attempt_unsubscribe false",
    ]
    if uplink.username is not None:
        lines.append(f"remote_username {uplink.username}")
    if password is not None:
        lines.append(f"remote_password {password}")
    if uplink.certificate_directory is not None:
        directory = uplink.certificate_directory
        lines += [
            f"bridge_cafile {directory / constants.CA_CERTS}",
            f"bridge_certfile {directory / constants.CERTFILE}",
            f"bridge_keyfile {directory / constants.KEYFILE}",
            "bridge_tls_version tlsv1.2",
        ]
        if uplink.tls_insecure:
            lines.append("bridge_insecure true")
    prefix = uplink.remote_prefix
    lines += [f'topic {pattern} out 1 "" {prefix}' for pattern in uplink.topics_out]
    lines += [f'topic {pattern} in 1 "" {prefix}' for pattern in uplink.incoming]
    return lines


def config_lines(uplink: UplinkConfig, host_name: str) -> list[str]:
    """Everything the uplink adds to the embedded broker's configuration."""
    uplink.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return broker_lines(uplink) + bridge_lines(uplink, host_name, uplink.read_password())
