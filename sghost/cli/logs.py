"""``sghost logs [RESOURCE] [-n N] [-f]``: a resource's recent output, read from the running host.

The host keeps each resource's last lines in memory (:mod:`sghost.host.logring`)
and serves them on its control socket, so this works without ``log_dir`` and
under systemd. Without RESOURCE, every resource's lines are interleaved in the
order they arrived, each prefixed with ``[name]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sghost.host.control import ControlError, encode_message, read_line
from sghost.host.logring import DEFAULT_TAIL

EXIT_OK = 0
EXIT_FAILURE = 1
ANSWER_TIMEOUT = 10.0


def add_logs_parser(commands: Any, add_manifest_option: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser(
        "logs",
        help="show a resource's recent output (stdout, stderr, its log), or every resource's",
        description="Print the last lines a resource wrote, kept in memory by the running host "
        "(also those of a process that has died). Without RESOURCE, every resource's lines, "
        "interleaved, each prefixed with [name].",
    )
    parser.add_argument("resource", nargs="?", help="one resource (default: every resource)")
    parser.add_argument(
        "-n", "--lines", type=_count, default=DEFAULT_TAIL, metavar="N",
        help=f"how many lines (default: {DEFAULT_TAIL})",
    )
    parser.add_argument("-f", "--follow", action="store_true", help="then print new lines as they come, until Ctrl-C")
    add_manifest_option(parser)
    parser.set_defaults(handler=run_logs)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of lines, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more lines, not {value}")
    return value


def format_line(line: dict[str, Any], prefixed: bool) -> str:
    text = str(line.get("text", ""))
    return f"[{line.get('resource', '?')}] {text}" if prefixed else text


def run_logs(args: argparse.Namespace) -> int:
    payload = {"op": "logs", "resource": args.resource, "lines": args.lines, "follow": args.follow}
    try:
        sock = _connect(args.config)
    except ControlError as error:
        print(f"sghost logs: {error}", file=sys.stderr)
        return EXIT_FAILURE
    with sock:
        try:
            return _show(sock, payload, prefixed=args.resource is None)
        except KeyboardInterrupt:
            return EXIT_OK
        except ControlError as error:
            print(f"sghost logs: {error}", file=sys.stderr)
            return EXIT_FAILURE


def _connect(manifest: str | Path) -> socket.socket:
    from sghost.cli.client import existing_socket_paths

    last_error = "no control socket"
    for path in existing_socket_paths(manifest):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(ANSWER_TIMEOUT)
        try:
            sock.connect(os.fsencode(path))
            return sock
        except PermissionError:
            sock.close()
            raise ControlError(f"permission denied on {path}: run this as the user that runs sghost") from None
        except OSError as error:
            sock.close()
            last_error = f"{path}: {error.strerror or error}"
    raise ControlError(f"no sghost is running for {manifest} ({last_error})")


def _show(sock: socket.socket, payload: dict[str, Any], prefixed: bool) -> int:
    try:
        sock.sendall(encode_message(payload))
        first = read_line(sock, limit=256 * 1024 * 1024)
    except (OSError, ValueError) as error:
        raise ControlError(f"lost the connection to sghost: {error}") from None
    answer = _decode(first)
    if not answer.get("ok"):
        raise ControlError(str(answer.get("message") or answer.get("error") or "refused"))
    for line in answer.get("lines", []):
        print(format_line(line, prefixed), flush=False)
    sys.stdout.flush()
    if not payload["follow"]:
        return EXIT_OK
    sock.settimeout(None)
    with sock.makefile("rb") as stream:
        for raw in stream:
            print(format_line(_decode(raw.rstrip(b"\n")), prefixed), flush=True)
    print("sghost logs: the host closed the stream (it stopped)", file=sys.stderr)
    return EXIT_OK


def _decode(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise ControlError("sghost closed the connection without an answer")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError("sghost answered something that is not JSON") from None
    if not isinstance(value, dict):
        raise ControlError("sghost answered something that is not a JSON object")
    return value
