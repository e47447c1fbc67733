"""Broker addresses: one host (the specified API) or a list of ``host:port`` tried in turn (an extension)."""

from __future__ import annotations

from collections.abc import Sequence


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; raise ValueError naming what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"A broker address must be 'host' or 'host:port', not {text!r}")
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"A broker address must be '[v6]' or '[v6]:port', not {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ValueError(f"A broker address needs a host name, not {text!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"The port of broker address {text!r} must be a whole number from 1 to 65535")
    return host, int(port_text)


def broker_addresses(host: str | Sequence[str], default_port: int) -> list[tuple[str, int]]:
    """Every address to try, in order. A plain string is one host name, used with ``default_port``."""
    if isinstance(host, str):
        return [(host, default_port)]
    addresses = [parse_address(each, default_port) for each in host]
    if not addresses:
        raise ValueError("The list of broker addresses is empty; expected at least one 'host:port'")
    return addresses
