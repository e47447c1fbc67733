"""Topic names, payloads and defaults of the Secure Gateway MQTT scheme.

Topics have exactly three levels: ``prefix/servicename/signalname``.
"""

PREFIX_COMMAND = "command"
PREFIX_DATA = "data"
PREFIX_COMMANDAVAILABLE = "commandavailable"
PREFIX_DATAAVAILABLE = "dataavailable"
PREFIX_RESOURCEAVAILABLE = "resourceavailable"

SUFFIX_PRESENCE = "presence"
PRESENCE = SUFFIX_PRESENCE

PAYLOAD_TRUE = "True"
PAYLOAD_FALSE = "False"

CA_CERTS = "ca_public_certificate.pem"
CERTFILE = "public_certificate.pem"
KEYFILE = "private_key.pem"

DEFAULT_PORT = 1883
DEFAULT_QOS = 1
DEFAULT_TIMEOUT = 1.0
DEFAULT_KEEPALIVE_TIME = 10

# Extensions (not in the original Secure Gateway API): see docs/sgframework.md.
MAX_QUEUED_MESSAGES = 10000
"""Outgoing QoS >= 1 messages not yet acknowledged by the broker (queued or in flight); see PublishError."""
MAX_QUEUED_MESSAGES_LIMIT = 65000
"""The largest max_queued_messages: paho's message ids run out at 65,535."""
MAX_QUEUED_BYTES = 4 * 1024 * 1024
"""Bytes (topic + payload) of outgoing QoS >= 1 messages not yet acknowledged."""
PUBLISH_TIMEOUT = 10.0
"""Longest a QoS >= 1 send waits for room in a full queue while connected, then PublishError."""
WARNING_SUMMARY_INTERVAL = 5.0
"""A repeated drop or refusal is logged once, then summed up at most this often (seconds)."""
RECONNECT_DELAY_MIN = 0.5
RECONNECT_DELAY_MAX = 5.0
START_WAIT_TIME = 1.0
"""Longest a threaded start() waits for the broker before it returns."""
STOP_WAIT_TIME = 2.0
"""Longest stop() waits for the broker to acknowledge the presence 'False'."""

FORBIDDEN_NAME_CHARACTERS = ("/", "+", "#", "\0")
IDLE_WAIT_MAX = 3600.0
"""Longest the threaded network loop sleeps when nothing is due (no keepalive): it wakes for traffic anyway."""
RELIEF_AFTER = 0.1
"""Threaded mode: seconds one callback may run on paho's thread before the relief thread runs the network."""
