"""The manifest's ``[dashboard]`` table: the gateway's own web page (docs/dashboard.md).

Parsed here, called from :func:`sghost.config.manifest.load_manifest`, so that the
manifest module only learns one more table. The page itself runs in a process of
its own (:mod:`sghost.dashboard`). Problems are reported through the manifest's
problem collector, in its format (``<file>: <key path>: <what is wrong>; <what is expected>``).

Secure by default: off, on ``127.0.0.1:8080``, read-only. Listening on anything
but loopback requires ``token_file``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgframework.constants import CERTFILE, KEYFILE
from sghost.config import parsing as p
from sghost.config.parsing import Problems

TABLE = "dashboard"
DEFAULT_LISTEN = ("127.0.0.1", 8080)
CERTIFICATE_FILES = (CERTFILE, KEYFILE)
"""What a dashboard ``certificate_directory`` must hold (``sghost certs issue NAME --server`` makes them)."""
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class DashboardConfig:
    """``[dashboard]``: the gateway's web page and its API. Holds the token file's path, never the token."""

    enabled: bool = False
    listen: tuple[str, int] = DEFAULT_LISTEN
    """Address and port the page listens on."""
    token_file: Path | None = None
    certificate_directory: Path | None = None
    """TLS (1.2+) with the directory's public_certificate.pem and private_key.pem."""
    control: bool = False
    """Whether the page and the API may start, stop and restart resources."""
    hosts: tuple[str, ...] = ()
    """Host names (besides the listen address) a browser may use to reach the page: the Host header check."""
    watchdog: float = 30.0
    """Seconds without a heartbeat from the page's process before it is killed and started again; 0 = off."""

    @property
    def loopback(self) -> bool:
        return is_loopback(self.listen[0])

    def read_token(self) -> str | None:
        """The token (the file's first line), or None without ``token_file``."""
        if self.token_file is None:
            return None
        text = self.token_file.read_text(encoding="utf-8")
        return text.splitlines()[0].strip() if text.strip() else ""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_dashboard(problems: Problems, table: Mapping[str, Any]) -> DashboardConfig:
    """Parse ``[dashboard]`` (the defaults when absent), recording every problem in ``problems``."""
    config = DashboardConfig(**p.read_table(problems, (TABLE,), table, _PARSERS))
    if config.token_file is not None:
        _check_token_file(problems, f"{TABLE}.token_file", config.token_file)
    if config.certificate_directory is not None:
        _check_certificates(problems, f"{TABLE}.certificate_directory", config.certificate_directory)
    if not config.loopback and config.token_file is None:
        host, port = config.listen
        problems.add(
            f"{TABLE}.token_file",
            f"unset while listen = \"{_shown_address(host, port)}\" is not a loopback address; expected "
            "token_file (a file of mode 0600 holding the token), or listen on 127.0.0.1",
        )
    if config.enabled and config.control and config.token_file is None:
        problems.warn(
            f"{TABLE}.control",
            "true without token_file: every local user who can reach the page can stop and restart resources",
        )
    if not config.loopback and config.certificate_directory is None and config.token_file is not None:
        problems.warn(
            f"{TABLE}.certificate_directory",
            "unset while listening beyond loopback: the token and the page cross the network unencrypted",
        )
    return config


def _listen(problems: Problems, keypath: str, value: Any) -> Any:
    expected = '"address:port", such as "127.0.0.1:8080" or "[::]:8443"'
    if not isinstance(value, str) or not value.strip():
        return problems.wrong_type(keypath, value, f"a string {expected}")
    text = value.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return problems.add(keypath, f"{p.show(value)} is not an address with a port; expected {expected}")
    return host, int(port_text)


def _hosts(problems: Problems, keypath: str, value: Any) -> Any:
    expected = 'an array of host names, such as ["gateway.local", "192.168.1.20"]'
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        return problems.wrong_type(keypath, value, expected)
    bad = [item for item in value if any(char in item for char in " /:@") and not _is_ip(item)]
    if bad:
        shown = p.show(bad[0])
        return problems.add(keypath, f"{shown} is not a host name; expected {expected} (no port, scheme or path)")
    return tuple(item.strip().lower() for item in value)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_PARSERS: dict[str, p.Parser] = {
    "enabled": p.boolean,
    "listen": _listen,
    "token_file": p.file_path,
    "certificate_directory": p.file_path,
    "control": p.boolean,
    "hosts": _hosts,
    "watchdog": p.number(0, strict=False),
}


def _check_token_file(problems: Problems, keypath: str, path: Path) -> None:
    """Like ``password_file``: a regular file only its owner may read or write, holding the token."""
    before = len(problems.lines)
    p.check_password_file(problems, keypath, path, holding="the dashboard's token")
    if len(problems.lines) == before:
        token = DashboardConfig(token_file=path).read_token() or ""
        if not token:
            problems.add(keypath, f"{path} is empty; expected the token on its first line")
        elif len(token) < MIN_TOKEN_LENGTH:
            problems.warn(keypath, f"the token in {path} has {len(token)} characters; use at least {MIN_TOKEN_LENGTH} "
                          "random ones (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")


def _check_certificates(problems: Problems, keypath: str, directory: Path) -> None:
    expected = "expected a directory holding " + " and ".join(CERTIFICATE_FILES) + " (sghost certs issue NAME --server)"
    if not directory.is_dir():
        problems.add(keypath, f"directory not found: {directory}; {expected}")
        return
    for name in CERTIFICATE_FILES:
        if not (directory / name).is_file():
            problems.add(keypath, f"missing file {directory / name}; {expected}")


def _shown_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def shown_listen(config: DashboardConfig) -> str:
    """``address:port`` as written in the manifest (IPv6 in brackets)."""
    return _shown_address(*config.listen)


__all__ = ["DashboardConfig", "is_loopback", "read_dashboard", "shown_listen"]
