"""What the zygote runs for the dashboard's process (``RUNNERS`` in the supervisor).

Kept light: the zygote imports this module for every host, so the web server
is imported only here, in the dashboard's own process, when it is enabled.
"""

from __future__ import annotations

from typing import Any


def run_dashboard(spec: Any, registry: object, channel: object, inbound_fds: list[int]) -> int:
    """Serve the page until SIGTERM; return the exit code (2: it cannot listen or read its token)."""
    from sghost.dashboard.app import serve

    settings = spec.settings
    return serve(settings["config"], settings["control_socket"], settings["host"], channel)
