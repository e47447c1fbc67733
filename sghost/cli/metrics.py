"""``sghost metrics``: the running host's Prometheus metrics on stdout, from its control socket."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1


def add_metrics_parser(subparsers: Any, default_manifest: str) -> None:
    """Add ``sghost metrics [-c MANIFEST]`` to the command line."""
    parser = subparsers.add_parser(
        "metrics",
        help="print the running host's Prometheus metrics (the text of [metrics] textfile)",
        description="Print the running host's metrics in Prometheus's text exposition format, "
        "the same text [metrics] textfile holds. Exits 1 when no sghost runs for the manifest.",
    )
    parser.add_argument(
        "-c", "--config", default=default_manifest, metavar="MANIFEST",
        help=f"the host manifest (default: ./{default_manifest})",
    )
    parser.set_defaults(handler=_metrics)


def _metrics(args: argparse.Namespace) -> int:
    from sghost.cli.client import request
    from sghost.health.metrics import render
    from sghost.host.control import ControlError

    try:
        answer = request(args.config, {"op": "status"})
    except ControlError as error:
        print(f"sghost metrics: {error}", file=sys.stderr)
        return EXIT_FAILURE
    status = answer.get("status")
    if not answer.get("ok") or not isinstance(status, dict):
        print(f"sghost metrics: {answer.get('message') or answer.get('error') or answer}", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.write(render(status))
    return EXIT_OK
