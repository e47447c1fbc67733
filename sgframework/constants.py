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
"""Outgoing QoS >= 1 messages kept while the broker is away; more are refused."""
RECONNECT_DELAY_MIN = 0.5
RECONNECT_DELAY_MAX = 5.0
START_WAIT_TIME = 1.0
"""Longest a threaded start() waits for the broker before it returns."""
STOP_WAIT_TIME = 2.0
"""Longest stop() waits for the broker to acknowledge the presence 'False'."""

FORBIDDEN_NAME_CHARACTERS = ("/", "+", "#", "\0")
