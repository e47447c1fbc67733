"""The dashboard's side of the host's control socket: one request per connection, or a followed stream.

The same protocol as ``sghost status``, ``sghost logs -f`` and the rest
(:mod:`sghost.host.control`); the supervisor hands the dashboard's process the
socket's path, so nothing is searched for.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from sghost.process.controlwire import ControlError, encode_message, read_line

REQUEST_TIMEOUT = 10.0
MAX_ANSWER = 64 * 1024 * 1024


class ControlLink:
    """Talks to the supervisor that started this process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(os.fsencode(self.path))
        except OSError as error:
            sock.close()
            raise ControlError(f"cannot reach sghost's control socket {self.path}: {error.strerror or error}") from None
        return sock

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One request, its answer. Raises ControlError when the host cannot be reached or answers nonsense."""
        with self._connect(REQUEST_TIMEOUT) as sock:
            try:
                sock.sendall(encode_message(payload))
                line = read_line(sock, limit=MAX_ANSWER)
            except (OSError, ValueError) as error:
                raise ControlError(f"lost the control connection: {error}") from None
        return _decode(line)

    def follow(self, payload: dict[str, Any], timeout: float | None = None) -> Stream:
        """Open a followed stream (``events``, or ``logs`` with ``follow``): its first answer, then its lines."""
        sock = self._connect(REQUEST_TIMEOUT)
        try:
            sock.sendall(encode_message(payload))
            stream = Stream(sock)
            stream.first = stream.next_message()
        except (OSError, ValueError, ControlError) as error:
            sock.close()
            raise ControlError(f"cannot follow {payload.get('op')}: {error}") from None
        sock.settimeout(timeout)
        return stream


class Stream:
    """A followed control connection: one JSON object per line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.first: dict[str, Any] = {}
        self._buffer = bytearray()

    def fileno(self) -> int:
        return self.sock.fileno()

    def next_message(self) -> dict[str, Any]:
        """The next object; raises ControlError at end of stream, TimeoutError when the timeout passes."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ControlError("sghost closed the stream")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return _decode(line)

    def messages(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.next_message()

    def close(self) -> None:
        self.sock.close()


def _decode(line: bytes) -> dict[str, Any]:
    if not line:
        raise ControlError("sghost closed the control connection without an answer")
    try:
        answer = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("sghost answered something that is not JSON") from None
    if not isinstance(answer, dict):
        raise ControlError(f"sghost answered {type(answer).__name__}, not a JSON object")
    return answer
