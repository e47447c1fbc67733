"""The control socket's wire format: one JSON object per line, each way.

The host serves it (:mod:`sghost.host.control`); the command line and the
dashboard's process are its clients. It sits with the other ways processes
talk to each other, below both sides.
"""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_REQUEST = 65536
"""Bytes of one request line at most."""


class ControlError(Exception):
    """The control channel cannot be used; ``str(error)`` says why, for the user."""


def read_line(conn: socket.socket, limit: int = MAX_REQUEST) -> bytes:
    """Read up to the first newline (or end of stream); raise ValueError past ``limit`` bytes."""
    data = bytearray()
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError(f"request longer than {limit} bytes")
    return bytes(data.split(b"\n", 1)[0])


def encode_message(message: dict[str, Any]) -> bytes:
    """One message as the line the socket carries."""
    return json.dumps(message, separators=(",", ":"), default=str).encode("utf-8") + b"\n"
