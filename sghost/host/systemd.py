"""systemd service notifications (``sd_notify``) without libsystemd or any other dependency.

With ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a datagram socket
(a path, or an abstract name written with a leading ``@``). sghost sends
``READY=1`` once every resource has been started, ``WATCHDOG=1`` every
:func:`watchdog_interval` seconds while its loop runs, ``RELOADING=1`` while
it re-reads the manifest and ``STOPPING=1`` on shutdown. Everything here is a
no-op returning False outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("sghost.systemd")

READY = "READY=1"
STOPPING = "STOPPING=1"
WATCHDOG = "WATCHDOG=1"


def _address(value: str) -> str | bytes | None:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or an abstract name (``@name``)."""
    if value.startswith("@"):
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return value
    return None  # e.g. systemd's "vsock:" addresses, which sghost does not need


def notify(message: str) -> bool:
    """Send ``message`` (``KEY=VALUE`` lines) to ``$NOTIFY_SOCKET``.

    Returns True when sent, False when the variable is unset, names an
    unsupported address or the send failed (logged; never raises).
    """
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _address(value)
    if address is None:
        log.debug("NOTIFY_SOCKET=%r: unsupported address", value)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode("utf-8"), address)
    except OSError as error:
        log.warning("cannot notify systemd on %s: %s", value, error)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd sghost is up (every resource has been started), with an optional status line."""
    return notify(READY + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    """Tell systemd sghost is shutting down."""
    return notify(STOPPING)


def reloading() -> bool:
    """Tell systemd sghost re-reads its manifest; send :func:`ready` when done."""
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog() -> bool:
    """Tell systemd the loop is alive; send every :func:`watchdog_interval` seconds."""
    return notify(WATCHDOG)


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` messages (half of ``WatchdogSec``), or None when systemd expects none.

    None when ``$WATCHDOG_USEC`` is unset, not a positive integer, or when
    ``$WATCHDOG_PID`` is set to another process's pid (the watchdog is meant for that one).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        period = int(usec)
    except ValueError:
        return None
    if period <= 0:
        return None
    return period / 1_000_000 / 2


__all__ = ["notify", "ready", "reloading", "stopping", "watchdog", "watchdog_interval"]
