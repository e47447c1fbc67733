"""The dashboard's HTTP(S) server: the page, its static files and the API (docs/dashboard.md).

==========================================  ==========================================================
``GET /``                                   the page, or the login form without a valid session
``POST /login``, ``POST /logout``           the form's token -> a session cookie; end the session
``GET /static/app.js``, ``/static/…``        the page's script and style (no token needed: nothing secret)
``GET /api/status``                         the document of ``sghost status --json``
``GET /api/events``                         server-sent events: ``status`` (every sample), ``state``
``GET /api/dashboard``                      this dashboard's settings the page needs (``control`` …)
``GET /api/resources/<name>/history``       the last hour: ``{"t", "cpu", "memory", "restarts"}``
``GET /api/resources/<name>/logs?n=N``      the last N lines, ``{"lines": [...]}``
``GET /api/resources/<name>/logs/follow``   server-sent events: ``lines`` (the last ``n``), then ``line``
``POST /api/resources/<name>/restart``      also ``/stop`` and ``/start``; only with ``control = true``
==========================================  ==========================================================

One thread per connection (``ThreadingHTTPServer``), at most
:data:`MAX_CONNECTIONS` at once; TLS handshakes happen in that thread, so a
slow client delays nobody else.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sghost.config.dashboard import DashboardConfig
from sghost.dashboard.history import HISTORY_SECONDS
from sghost.dashboard.hub import Hub, sse
from sghost.dashboard.liveness import Turning
from sghost.dashboard.security import HEADERS, Guard
from sghost.process.controlwire import ControlError

MAX_CONNECTIONS = 48
MAX_LOG_FOLLOWERS = 4
MAX_BODY = 4096
MAX_LOG_LINES = 1000
DEFAULT_LOG_LINES = 100
KEEPALIVE = 15.0
"""Seconds between comments on a quiet event stream: they find browsers that left."""
REQUEST_TIMEOUT = 20.0
"""Seconds a client may take to send its request, and to take each part of the answer."""
HANDSHAKE_TIMEOUT = 10.0
POLL_INTERVAL = 5.0
"""The accept loop turns at least this often when idle (shown by the heartbeat)."""
COMMANDS = ("restart", "stop", "start")
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGES = ("index.html", "login.html")
JSON_TYPE = "application/json; charset=utf-8"
WRONG_MARKER = b"<!--wrong-->"
WRONG_TEXT = b'<p class="wrong" id="wrong">Wrong token.</p>'

log = logging.getLogger("sghost.dashboard")


def _package_file(name: str) -> bytes:
    return resources.files("sghost.dashboard").joinpath("static", name).read_bytes()


class DashboardServer(ThreadingHTTPServer):
    """Serves one dashboard; ``hub`` holds what it shows, ``guard`` decides who sees it."""

    daemon_threads = True
    request_queue_size = 16

    def __init__(
        self,
        address: tuple[str, int],
        config: DashboardConfig,
        hub: Hub,
        guard: Guard,
        host_name: str,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Handler)
        self.config = config
        self.hub = hub
        self.guard = guard
        self.host_name = host_name
        self.tls = tls
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.log_followers = threading.BoundedSemaphore(MAX_LOG_FOLLOWERS)
        self.files = {name: _package_file(name) for name in (*STATIC, *PAGES)}
        self.loop_turning = Turning(POLL_INTERVAL)
        """The accept loop's progress, for the process's heartbeat (sghost.dashboard.liveness)."""

    def serve(self) -> None:
        """The accept loop (on its own thread), until ``shutdown()``."""
        self.serve_forever(poll_interval=POLL_INTERVAL)

    def service_actions(self) -> None:
        """Called by ``serve_forever`` after every select, at least every POLL_INTERVAL."""
        super().service_actions()
        self.loop_turning.turned()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: the browser retries
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                request.settimeout(HANDSHAKE_TIMEOUT)
                request = self.tls.wrap_socket(request, server_side=True)
            self.finish_request(request, client_address)
        except Exception as error:
            log.debug("connection from %s ended: %s", client_address[0], error)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error serving %s", client_address[0], exc_info=True)


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "sghost"
    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def end_headers(self) -> None:
        for name, value in HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    # ------------------------------------------------------------ answers

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document: Any, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(document, separators=(",", ":"), default=str).encode()
        self._send(status, body, JSON_TYPE, extra)

    def _refuse(self, status: int, message: str, extra: dict[str, str] | None = None) -> None:
        self._json(status, {"ok": False, "error": message}, extra)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The base class's errors (bad request lines, unknown methods) as JSON, with the same headers."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._refuse(code, message or HTTPStatus(code).phrase)

    # ------------------------------------------------------------ checks

    def _host_ok(self) -> bool:
        if self.server.guard.host_allowed(self.headers.get("Host")):
            return True
        self._refuse(HTTPStatus.FORBIDDEN, "this dashboard is not reached by that name (Host header); "
                     "add it to [dashboard] hosts")
        return False

    def _authorized(self) -> tuple[bool, bool]:
        """(authorized, by a Bearer token)."""
        guard = self.server.guard
        if not guard.needs_token:
            return True, False
        bearer = guard.bearer(self.headers)
        if bearer is not None:
            if guard.too_many_failures():
                return False, True
            return guard.token_matches(bearer), True
        return guard.session_valid(guard.session_of(self.headers.get("Cookie"))), False

    def _report_failures(self) -> None:
        count = self.server.guard.failures_to_report()
        if count:
            log.warning("%d wrong token(s), the last from %s (logged at most once a minute)",
                        count, self.client_address[0])

    def _refuse_unauthorized(self) -> None:
        self._report_failures()
        if self.server.guard.too_many_failures():
            self._refuse(HTTPStatus.TOO_MANY_REQUESTS, "too many wrong tokens; try again in a minute",
                         {"Retry-After": "60"})
            return
        self._refuse(HTTPStatus.UNAUTHORIZED, "a token is needed: log in, or send Authorization: Bearer <token>",
                     {"WWW-Authenticate": 'Bearer realm="sghost"'})

    # ------------------------------------------------------------ GET

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/static/") and path[len("/static/"):] in STATIC:
            name = path[len("/static/"):]
            self._send(HTTPStatus.OK, self.server.files[name], STATIC[name])
            return
        if path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            return
        authorized, _bearer = self._authorized()
        if path == "/":
            page = "index.html" if authorized else "login.html"
            self._send(HTTPStatus.OK, self.server.files[page], "text/html; charset=utf-8")
            return
        if not authorized:
            self._refuse_unauthorized()
            return
        if path == "/api/status":
            self._status()
        elif path == "/api/events":
            self._events()
        elif path == "/api/dashboard":
            self._json(HTTPStatus.OK, {
                "host": self.server.host_name, "control": self.server.config.control,
                "sample_interval": self.server.hub.sample_interval, "history_seconds": HISTORY_SECONDS,
                "login": self.server.guard.needs_token,
            })
        elif (parts := _resource_path(path)) is not None:
            name, rest = parts
            if rest == "history":
                self._history(name)
            elif rest == "logs":
                self._logs(name, parse_qs(url.query))
            elif rest == "logs/follow":
                self._follow_logs(name, parse_qs(url.query))
            else:
                self._refuse(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        else:
            self._refuse(HTTPStatus.NOT_FOUND, f"no such page: {path}")

    def _status(self) -> None:
        try:
            status = self.server.hub.current_status()
        except ControlError as error:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, f"sghost does not answer: {error}")
            return
        self._json(HTTPStatus.OK, status)

    def _history(self, name: str) -> None:
        with self.server.hub.lock:
            history = self.server.hub.history.of(name)
        if history is None:
            self._refuse(HTTPStatus.NOT_FOUND, f"no history of {name!r} (yet)")
            return
        self._json(HTTPStatus.OK, {"resource": name, "interval": self.server.hub.sample_interval, **history})

    def _log_count(self, query: dict[str, list[str]]) -> int | None:
        text = (query.get("n") or [str(DEFAULT_LOG_LINES)])[0]
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_LOG_LINES:
            self._refuse(HTTPStatus.BAD_REQUEST, f"n={text!r}: expected a whole number from 0 to {MAX_LOG_LINES}")
            return None
        return int(text)

    def _logs(self, name: str, query: dict[str, list[str]]) -> None:
        count = self._log_count(query)
        if count is None:
            return
        try:
            answer = self.server.hub.link.request({"op": "logs", "resource": name, "lines": count})
        except ControlError as error:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, f"sghost does not answer: {error}")
            return
        if not answer.get("ok"):
            self._refuse(HTTPStatus.NOT_FOUND, str(answer.get("message") or answer.get("error")))
            return
        self._json(HTTPStatus.OK, {"lines": answer.get("lines", [])})

    def _start_stream(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.wfile.write(b"retry: 2000\n\n")
        self.wfile.flush()

    def _events(self) -> None:
        subscription = self.server.hub.subscribe()
        if subscription is None:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many pages follow this dashboard; try again later",
                         {"Retry-After": "10"})
            return
        subscriber, first = subscription
        try:
            self._start_stream()
            if first:
                self.wfile.write(first)
            while not subscriber.dropped:
                message = subscriber.get(KEEPALIVE)
                self.wfile.write(message if message is not None else b": keepalive\n\n")
                self.wfile.flush()
        except OSError:
            pass  # the page went away
        finally:
            self.server.hub.unsubscribe(subscriber)

    def _follow_logs(self, name: str, query: dict[str, list[str]]) -> None:
        count = self._log_count(query)
        if count is None:
            return
        if not self.server.log_followers.acquire(blocking=False):
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE,
                         f"{MAX_LOG_FOLLOWERS} pages follow logs already; try again later", {"Retry-After": "10"})
            return
        try:
            self._relay_logs(name, count)
        finally:
            self.server.log_followers.release()

    def _relay_logs(self, name: str, count: int) -> None:
        payload = {"op": "logs", "resource": name, "lines": count, "follow": True}
        try:
            stream = self.server.hub.link.follow(payload, timeout=KEEPALIVE)
        except ControlError as error:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, f"sghost does not answer: {error}")
            return
        try:
            if not stream.first.get("ok"):
                self._refuse(HTTPStatus.NOT_FOUND, str(stream.first.get("message") or stream.first.get("error")))
                return
            self._start_stream()
            self.wfile.write(sse("lines", {"lines": stream.first.get("lines", [])}))
            self.wfile.flush()
            while True:
                try:
                    self.wfile.write(sse("line", stream.next_message()))
                except TimeoutError:
                    self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
        except (OSError, ControlError):
            pass  # the page or the host went away
        finally:
            stream.close()

    # ------------------------------------------------------------ POST

    def do_POST(self) -> None:
        if not self._host_ok():
            return
        path = urlsplit(self.path).path
        parts = _resource_path(path)
        is_command = parts is not None and parts[1] in COMMANDS
        if path not in ("/login", "/logout") and not (is_command and self.server.config.control):
            self._refuse(HTTPStatus.NOT_FOUND, f"no such page: {path}"
                         + ("" if not is_command else " (the dashboard is read-only: [dashboard] control = false)"))
            return
        length = self.headers.get("Content-Length", "0")
        if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"expected a body of at most {MAX_BODY} bytes")
            return
        body = self.rfile.read(int(length))
        if path == "/login":
            self._login(body)
            return
        authorized, bearer = self._authorized()
        if not authorized and path != "/logout":
            self._refuse_unauthorized()
            return
        if not self.server.guard.origin_allowed(self.headers, bearer):
            self._refuse(HTTPStatus.FORBIDDEN, "refused: this request comes from another site (Origin)")
            return
        if path == "/logout":
            self.server.guard.end_session(self.server.guard.session_of(self.headers.get("Cookie")))
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {
                "Location": "/", "Set-Cookie": self.server.guard.cookie_header("", max_age=0),
            })
            return
        assert parts is not None
        self._command(parts[1], parts[0])

    def _login(self, body: bytes) -> None:
        guard = self.server.guard
        if not guard.origin_allowed(self.headers, bearer=True):
            self._refuse(HTTPStatus.FORBIDDEN, "refused: this request comes from another site (Origin)")
            return
        if guard.too_many_failures():
            self._refuse_unauthorized()
            return
        token = (parse_qs(body.decode("utf-8", errors="replace")).get("token") or [""])[0]
        if not guard.needs_token or not guard.token_matches(token):
            self._report_failures()
            page = self.server.files["login.html"].replace(WRONG_MARKER, WRONG_TEXT)
            self._send(HTTPStatus.UNAUTHORIZED, page, "text/html; charset=utf-8")
            return
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain",
                   {"Location": "/", "Set-Cookie": guard.cookie_header(guard.new_session())})

    def _command(self, op: str, name: str) -> None:
        try:
            answer = self.server.hub.link.request({"op": op, "resource": name})
        except ControlError as error:
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, f"sghost does not answer: {error}")
            return
        ok = bool(answer.get("ok"))
        message = str(answer.get("message") or answer.get("error") or "")
        log.info("dashboard: %s %s from %s -> %s", op, name, self.client_address[0], message)
        self._json(HTTPStatus.OK if ok else HTTPStatus.CONFLICT, {"ok": ok, "message": message})

    def do_PUT(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED)

    do_DELETE = do_PATCH = do_OPTIONS = do_PUT


def _resource_path(path: str) -> tuple[str, str] | None:
    """``/api/resources/<name>/<rest>`` -> (name, rest)."""
    prefix = "/api/resources/"
    if not path.startswith(prefix):
        return None
    name, _, rest = path[len(prefix):].partition("/")
    name = unquote(name)
    if not name or "/" in name or not rest:
        return None
    return name, rest
