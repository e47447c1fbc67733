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
from sghost.dashboard.liveness import EventSender, Turning, beat, heartbeat_interval
from sghost.dashboard.security import Guard
from sghost.dashboard.server import DashboardServer
from sghost.process import events

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


def serve(config: DashboardConfig, control_socket: str, host_name: str, channel: EventSender | None = None) -> int:
    """Run the dashboard until SIGTERM (blocked in this process since its fork, so sigwait takes it).

    With ``channel`` (the events pipe to the supervisor) and ``config.watchdog``
    set, heartbeats go out on it while the server and the sampler turn.
    """
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
    threading.Thread(target=server.serve, name="http", daemon=True).start()
    scheme = "https" if context is not None else "http"
    beating = channel if config.watchdog > 0 else None
    if beating is not None:
        beating.send(events.HEARTBEAT)  # the first, before the line below: the start-up grace ends with it
    log.info("listening on %s://%s", scheme, where)
    if beating is None:
        signal.sigwait({signal.SIGTERM})
    else:
        _beat_until_sigterm(beating, heartbeat_interval(config.watchdog),
                            {"http": server.loop_turning, "sampler": hub.sampler_turning})
    hub.stop()
    server.server_close()
    return 0


def _beat_until_sigterm(channel: EventSender, interval: float, threads: dict[str, Turning]) -> None:
    """Send heartbeats every ``interval`` while no thread is stuck; return on SIGTERM."""
    reported: list[str] = []
    while signal.sigtimedwait({signal.SIGTERM}, interval) is None:
        stuck = beat(channel, threads)
        if stuck and stuck != reported:
            log.error("the %s thread has not turned for a while: no heartbeat until it does", " and ".join(stuck))
        reported = stuck
