"""Resource types for the dashboard's tests (tests/test_dashboard_*.py).

Loaded with ``SGHOST_PLUGINS=...,sghost_dashboard_plugins``.

=========  ===========================================================================
type       behaviour (settings)
=========  ===========================================================================
failer     ``setup`` raises ``RuntimeError(message)`` (``message``: any text, markup included)
talker     prints ``tick 1``, ``tick 2``, ... on stdout every ``interval`` s (0.2)
burner     keeps the CPU busy, between 10 % and 50 % of a core, in waves of ``period`` s (120)
=========  ===========================================================================
"""

from __future__ import annotations

import itertools
import math
import time
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


def setup_burner(context: ResourceContext) -> None:
    """Busy for a changing share of every 0.5 s: something for the CPU plot to show."""
    period = float(context.settings.get("period", 120.0))

    def burn() -> None:
        share = 0.3 + 0.2 * math.sin(time.monotonic() / period * 2 * math.pi)
        until = time.monotonic() + 0.5 * share
        while time.monotonic() < until:
            pass

    context.every(0.5, burn)


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    register("failer", setup_failer, description="raises its message at start")
    register("talker", setup_talker, description="prints a line every interval")
    register("burner", setup_burner, description="busy in waves")
