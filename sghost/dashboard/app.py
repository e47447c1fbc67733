"""The dashboard's process: read the token, open the listener (TLS when configured), serve until SIGTERM."""

from __future__ import annotations

import logging
import signal
import ssl
import sys
import threading

from sgframework.constants import CERTFILE, KEYFILE
from sghost.config.dashboard import DashboardConfig, shown_listen
from sghost.dashboard.hub import Hub
from sghost.dashboard.link import ControlLink
from sghost.dashboard.security import Guard
from sghost.dashboard.server import DashboardServer

EXIT_CONFIG = 2
log = logging.getLogger("sghost.dashboard")


def tls_context(config: DashboardConfig) -> ssl.SSLContext | None:
    """A server context (TLS 1.2 or later) from ``certificate_directory``, or None without one."""
    if config.certificate_directory is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    directory = config.certificate_directory
    context.load_cert_chain(directory / CERTFILE, directory / KEYFILE)
    return context


def serve(config: DashboardConfig, control_socket: str, host_name: str) -> int:
    """Run the dashboard until SIGTERM (blocked in this process since its fork, so sigwait takes it)."""
    where = shown_listen(config)
    try:
        token = config.read_token()
    except OSError as error:
        print(f"cannot read [dashboard] token_file {config.token_file}: {error.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    if token == "":
        print(f"[dashboard] token_file {config.token_file} is empty; expected the token", file=sys.stderr)
        return EXIT_CONFIG
    try:
        context = tls_context(config)
    except (OSError, ssl.SSLError) as error:
        print(f"cannot load [dashboard] certificate_directory {config.certificate_directory}: {error}",
              file=sys.stderr)
        return EXIT_CONFIG
    hub = Hub(ControlLink(control_socket))
    try:
        server = DashboardServer(config.listen, config, hub, Guard(config, token, context is not None),
                                 host_name, context)
    except OSError as error:
        print(f"cannot listen on {where}: {error.strerror or error}; expected a free address "
              "([dashboard] listen)", file=sys.stderr)
        return EXIT_CONFIG
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # in every thread: sigwait below takes it
    hub.start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 5.0}, name="http", daemon=True).start()
    scheme = "https" if context is not None else "http"
    log.info("listening on %s://%s", scheme, where)
    signal.sigwait({signal.SIGTERM})
    hub.stop()
    server.server_close()
    return 0
