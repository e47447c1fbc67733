"""A resource type that reports who its process is, for the privilege-drop tests.

``prober`` measures in ``setup`` (after sghost dropped to the resource's user) and
publishes, every 0.5 s, ``data/<name>/identity``: a JSON object with ``uid``, ``gid``,
``groups``, ``home``, ``no_new_privs`` (from /proc/self/status), ``back_to_root``
(what ``os.setuid(0)`` did) and ``reads``: for each path in ``settings["read"]``,
``"ok"`` or the name of the error that opening it raised.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import sghost

if TYPE_CHECKING:
    from sghost.context import ResourceContext
    from sghost.plugins import Register


def _try_read(path: str) -> str:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as error:
        return type(error).__name__
    return "ok"


def _back_to_root() -> str:
    try:
        os.setuid(0)
    except OSError as error:
        return type(error).__name__
    return "became root"


def _no_new_privs() -> str:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("NoNewPrivs:"):
                return line.split()[1]
    return "?"


def measure(settings: Any) -> dict[str, Any]:
    return {
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
        "home": os.environ.get("HOME"), "no_new_privs": _no_new_privs(),
        "reads": {path: _try_read(path) for path in settings.get("read", [])},
        "back_to_root": _back_to_root(),
    }


def setup_prober(context: ResourceContext) -> None:
    identity = json.dumps(measure(context.settings), sort_keys=True)
    context.resource.register_outgoing_data("identity")
    context.every(0.5, lambda: context.resource.send_data("identity", identity))


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    register("prober", setup_prober, description="publishes its uid, groups and which files it can read")
