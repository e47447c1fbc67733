"""The command line's side of the control socket: send one request to the running host, show its answer.

The host serves the socket (:mod:`sghost.host.control`); this module is only its client.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from sghost.host.control import ControlError, absolute_manifest, candidate_socket_paths, encode_message, read_line


def _configured_runtime_dir(absolute: Path) -> Path | None:
    """``[host] runtime_dir`` of the manifest, or None when unset or the manifest cannot be loaded."""
    from sghost.config.manifest import ManifestError, load_manifest

    try:
        return load_manifest(absolute).runtime_dir
    except ManifestError:
        return None


def existing_socket_paths(manifest_path: str | Path) -> list[Path]:
    """The control sockets that may serve ``manifest_path`` and exist now, preferred first.

    Raises ControlError when there is none.
    """
    absolute = absolute_manifest(manifest_path)
    candidates = candidate_socket_paths(absolute, _configured_runtime_dir(absolute))
    existing = [path for path in candidates if path.exists()]
    if not existing:
        raise ControlError(f"no sghost is running for {absolute} (no control socket at {candidates[0]})")
    return existing


def request(manifest_path: str | Path, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
    """Send one request to the sghost that runs ``manifest_path``; return its answer.

    Raises ControlError when no sghost runs for that manifest, it cannot be
    reached, or it does not answer within ``timeout`` seconds.
    """
    absolute = absolute_manifest(manifest_path)
    candidates = candidate_socket_paths(absolute, _configured_runtime_dir(absolute))
    existing = [path for path in candidates if path.exists()]
    if not existing:
        raise ControlError(f"no sghost is running for {absolute} (no control socket at {candidates[0]})")
    refused: list[Path] = []
    for path in existing:
        try:
            return _exchange(path, payload, timeout)
        except (ConnectionRefusedError, FileNotFoundError):
            refused.append(path)
        except PermissionError:
            raise ControlError(
                f"permission denied on {path}: run this as the user that runs sghost for {absolute} (or root)"
            ) from None
    raise ControlError(f"no sghost is running for {absolute} (stale control socket at {refused[0]})")


def _exchange(path: Path, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    with sock:
        sock.connect(os.fsencode(path))
        try:
            sock.sendall(encode_message(payload))
            line = read_line(sock, limit=64 * 1024 * 1024)
        except TimeoutError:
            raise ControlError(f"sghost did not answer within {timeout} s on {path}") from None
        except (OSError, ValueError) as error:
            raise ControlError(f"lost the connection to sghost on {path}: {error}") from None
    if not line:
        raise ControlError(f"sghost closed the control connection on {path} without an answer")
    try:
        answer = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ControlError(f"sghost answered something that is not JSON on {path}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"sghost answered {type(answer).__name__}, not a JSON object, on {path}")
    return answer


def message_of(answer: dict[str, Any]) -> str:
    """The text to show for an answer: its ``message``, else its ``error``, else a generic word."""
    text = answer.get("message") or answer.get("error")
    if text:
        return str(text)
    return "OK" if answer.get("ok") else "failed (no reason given)"


def send_command(manifest_path: str | Path, op: str, resource: str | None = None, timeout: float = 10) -> int:
    """Ask the running host to ``op`` (start, stop, restart, reload) ``resource``; print its answer.

    The message goes to stdout on success, stderr otherwise. Returns the exit
    code: 0 when the host accepted, 1 when it refused or does not run.
    """
    payload: dict[str, Any] = {"op": op}
    if resource is not None:
        payload["resource"] = resource
    try:
        answer = request(manifest_path, payload, timeout)
    except ControlError as error:
        print(f"sghost {op}: {error}", file=sys.stderr)
        return 1
    if answer.get("ok"):
        print(message_of(answer))
        return 0
    print(f"sghost {op}: {message_of(answer)}", file=sys.stderr)
    return 1
