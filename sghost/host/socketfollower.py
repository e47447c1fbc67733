"""A reader that follows a stream over a socket (``sghost logs -f``, the page's ``events``).

The supervisor's loop must never block on a reader: it writes what the socket takes and
keeps the rest, and a reader that falls ``max_backlog`` bytes behind is dropped (it can
connect again and ask for what it missed).
"""

from __future__ import annotations

import contextlib
import socket


class SocketFollower:
    """One following reader: its socket, non-blocking, and what it has not taken yet."""

    def __init__(self, sock: socket.socket, max_backlog: int) -> None:
        self.sock = sock
        self.max_backlog = max_backlog
        self.backlog = bytearray()
        sock.setblocking(False)

    @property
    def too_far_behind(self) -> bool:
        return len(self.backlog) > self.max_backlog

    def send(self, data: bytes) -> bool:
        """Queue and write what the socket takes; False when the reader is gone or too far behind."""
        self.backlog += data
        try:
            while self.backlog:
                del self.backlog[: self.sock.send(self.backlog)]
        except BlockingIOError:
            pass
        except OSError:
            return False
        return not self.too_far_behind

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
