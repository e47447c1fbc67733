"""``sghost rebirth [RESOURCE]``: have resources publish again everything a new subscriber would find.

Presence, every announcement and every current value of the resource (or of
every resource, and the meta-resource's health topics, without RESOURCE or
with ``all``): for a dashboard or a bridge that lost its retained state.
Through the control socket; ``command/<host>/rebirth`` does the same over MQTT
with ``remote_control = true``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_rebirth_parser(commands: Any, add_manifest_option: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser(
        "rebirth",
        help="make resources publish their presence, announcements and values again",
        description="Have one resource (or all, with the host's health topics) publish again its presence, "
        "every announcement and every current value, for subscribers that lost their retained state.",
    )
    parser.add_argument("resource", nargs="?", default="all", help="a resource name, or 'all' (the default)")
    add_manifest_option(parser)
    parser.set_defaults(handler=run_rebirth)


def run_rebirth(args: argparse.Namespace) -> int:
    from sghost.cli.client import send_command

    return send_command(args.config, "rebirth", args.resource)
