"""Resource types for the dashboard's tests (tests/test_dashboard_*.py).

Loaded with ``SGHOST_PLUGINS=...,sghost_dashboard_plugins``.

=========  ===========================================================================
type       behaviour (settings)
=========  ===========================================================================
failer     ``setup`` raises ``RuntimeError(message)`` (``message``: any text, markup included)
talker     prints ``tick 1``, ``tick 2``, ... on stdout every ``interval`` s (0.2)
=========  ===========================================================================
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import sghost

if TYPE_CHECKING:
    from sghost.context import ResourceContext
    from sghost.plugins import Register


def setup_failer(context: ResourceContext) -> None:
    """Fail at start with the configured message."""
    raise RuntimeError(str(context.settings.get("message", "failed")))


def setup_talker(context: ResourceContext) -> None:
    """A line on stdout every ``interval`` seconds."""
    counter = itertools.count(1)

    def tick() -> None:
        print(f"tick {next(counter)}", flush=True)

    context.every(float(context.settings.get("interval", 0.2)), tick)


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    register("failer", setup_failer, description="raises its message at start")
    register("talker", setup_talker, description="prints a line every interval")
