"""Who may see the page and change anything: the token, sessions, the Host and Origin checks, the headers.

- With ``token_file`` set, every request but the login form and its two static
  files needs the token: as ``Authorization: Bearer <token>`` (scripts), or the
  session cookie the login form sets (HttpOnly, SameSite=Strict; Secure under
  TLS). Tokens are compared in constant time; the token never travels in a URL.
- The ``Host`` header must name this dashboard (DNS rebinding): the listen
  address, ``hosts``, loopback names when it listens on loopback, and this
  machine's own addresses when it listens on every address.
- A state-changing request whose ``Origin`` is not the page's own is refused,
  even with a valid token; one without ``Origin`` is allowed only with a
  Bearer token (a script), or when no token is configured.
- Failed logins and wrong tokens are limited to :data:`MAX_FAILURES` a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping

from sghost.config.dashboard import DashboardConfig, is_loopback

SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 64
"""Sessions kept; a new login beyond them ends the oldest."""
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
ADDRESSES_REFRESH = 30.0
LOOPBACK = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send "Origin: null" on the page's POSTs
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), usb=(), serial=()",
    "Cache-Control": "no-store",
}
"""Sent with every response."""


def host_name(header: str) -> str:
    """The name or address in a ``Host`` header, without the port and brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


class Guard:
    """The dashboard's checks; safe to use from the server's threads."""

    def __init__(self, config: DashboardConfig, token: str | None, tls: bool) -> None:
        self.config = config
        self.token = token.encode("utf-8") if token else None
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.cookie = f"sghost_dashboard_{config.listen[1]}"
        """Named after the port: cookies ignore ports, and two dashboards on one machine must not clash."""
        self._lock = threading.Lock()
        self._sessions: OrderedDict[bytes, float] = OrderedDict()
        self._failures: list[float] = []
        self._unreported = 0
        self._reported_at = -FAILURE_WINDOW
        self._addresses: set[str] = set()
        self._addresses_at = -ADDRESSES_REFRESH
        listen = config.listen[0].lower()
        self._names = {*config.hosts, listen}
        if is_loopback(listen) or listen in WILDCARDS:
            self._names.update(LOOPBACK)
        self._wildcard = listen in WILDCARDS

    # ------------------------------------------------------------ Host, Origin

    def host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        name = host_name(header)
        if name in self._names:
            return True
        return self._wildcard and name in self._local_addresses()

    def _local_addresses(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            if now - self._addresses_at >= ADDRESSES_REFRESH:
                import psutil

                self._addresses = {
                    _normal(address.address.partition("%")[0])
                    for addresses in psutil.net_if_addrs().values()
                    for address in addresses
                    if address.address
                }
                self._addresses_at = now
            return self._addresses

    def origin_allowed(self, headers: Mapping[str, str], bearer: bool) -> bool:
        """Whether a state-changing request comes from the page itself (or from a script with a token)."""
        origin = headers.get("Origin")
        if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return False
        if origin is None:
            return bearer or self.token is None
        own = f"{self.scheme}://{headers.get('Host', '')}".lower()
        return origin.strip().lower() == own

    # ------------------------------------------------------------ token, sessions

    @property
    def needs_token(self) -> bool:
        return self.token is not None

    def token_matches(self, candidate: str) -> bool:
        """Constant-time comparison; counts a failure (see :meth:`too_many_failures`)."""
        if self.token is None:
            return True
        matches = hmac.compare_digest(candidate.encode("utf-8"), self.token)
        if not matches:
            with self._lock:
                self._failures.append(time.monotonic())
                self._unreported += 1
        return matches

    def failures_to_report(self) -> int:
        """Wrong tokens not yet logged, at most once a minute (0 in between): the log is not flooded."""
        now = time.monotonic()
        with self._lock:
            if not self._unreported or now - self._reported_at < FAILURE_WINDOW:
                return 0
            count, self._unreported, self._reported_at = self._unreported, 0, now
            return count

    def too_many_failures(self) -> bool:
        now = time.monotonic()
        with self._lock:
            self._failures = [at for at in self._failures if now - at < FAILURE_WINDOW]
            return len(self._failures) >= MAX_FAILURES

    def bearer(self, headers: Mapping[str, str]) -> str | None:
        value = headers.get("Authorization") or ""
        scheme, _, credentials = value.partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None

    def new_session(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[_digest(session)] = time.monotonic() + SESSION_SECONDS
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def end_session(self, session: str | None) -> None:
        if session:
            with self._lock:
                self._sessions.pop(_digest(session), None)

    def session_valid(self, session: str | None) -> bool:
        if not session:
            return False
        key = _digest(session)  # looked up by digest: the lookup's timing says nothing about live sessions
        with self._lock:
            expires = self._sessions.get(key)
            if expires is None:
                return False
            if expires < time.monotonic():
                del self._sessions[key]
                return False
            return True

    def session_of(self, cookie_header: str | None) -> str | None:
        for part in (cookie_header or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                return value
        return None

    def cookie_header(self, session: str, max_age: int = SESSION_SECONDS) -> str:
        secure = "; Secure" if self.tls else ""
        return f"{self.cookie}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode("utf-8", errors="replace")).digest()


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower()
