"""Resource types for the tests of dependencies, logs, rebirth and environment (tests/test_supervision.py).

Loaded with ``SGHOST_PLUGINS=sghost_test_plugins,sghost_supervision_plugins``.

===========  ==========================================================================
type         behaviour (settings)
===========  ==========================================================================
signaller    ``ready="signal"``: ready once command ``ready`` arrives; command ``ping`` echoed
printer      prints ``line 1`` .. ``line <lines>`` (12) on stdout at start; command ``say``
             prints its payload; ``garbage`` writes binary bytes; ``crash`` prints
             ``dying: <payload>`` on stderr and exits with code 4
envreporter  data ``env_<KEY>`` (retained, default = the value of ``$KEY`` or ``<unset>``)
             for each KEY in ``keys``; data ``env_holds_probe``: ``yes`` if any variable's
             value contains ``secret_probe``, else ``no``
===========  ==========================================================================
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import sghost

if TYPE_CHECKING:
    from sghost.context import ResourceContext
    from sghost.plugins import Register

GARBAGE = bytes(range(256)) + b"\xff\xfe\x00\x1b[2J"


def setup_signaller(context: ResourceContext) -> None:
    """Ready (for its dependents) only once ``command/<name>/ready`` arrives."""

    def on_ready(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        context.logger.info("ready now")
        context.ready()

    context.resource.register_incoming_command("ready", on_ready)
    context.resource.register_incoming_command(
        "ping", lambda *args: None, defaultvalue="nothing yet", send_echo_as_retained=True
    )


def setup_printer(context: ResourceContext) -> None:
    """Lines on stdout, binary garbage, and a crash with a last word on stderr, on command."""
    for number in range(1, int(context.settings.get("lines", 12)) + 1):
        print(f"line {number}", flush=True)

    def on_say(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        print(payload, flush=True)

    def on_garbage(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        sys.stdout.buffer.write(GARBAGE + b"\n")
        sys.stdout.flush()

    def on_crash(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        print(f"dying: {payload}", file=sys.stderr, flush=True)
        os._exit(4)

    for name, callback in (("say", on_say), ("garbage", on_garbage), ("crash", on_crash)):
        context.resource.register_incoming_command(name, callback, echo=False)


def setup_envreporter(context: ResourceContext) -> None:
    """Publish the value of each environment variable named in ``keys``."""
    for key in context.settings.get("keys", []):
        context.resource.register_outgoing_data(
            f"env_{key}", defaultvalue=os.environ.get(key, "<unset>"), send_data_as_retained=True
        )
    probe = context.settings.get("secret_probe")
    if probe:
        holds = any(probe in value for value in os.environ.values())
        context.resource.register_outgoing_data(
            "env_holds_probe", defaultvalue="yes" if holds else "no", send_data_as_retained=True
        )


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    """Offer the supervision test types."""
    register("signaller", setup_signaller, ready="signal", description="ready on command")
    register("printer", setup_printer, description="prints lines, garbage, crashes on command")
    register("envreporter", setup_envreporter, description="publishes environment variables")
