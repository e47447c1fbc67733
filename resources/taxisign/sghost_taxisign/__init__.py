"""A taxi sign, turned on and off over MQTT: the Secure Gateway's classic example."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sghost

if TYPE_CHECKING:  # keep the entry-point module light: nothing heavy at import time
    from sghost.context import ResourceContext
    from sghost.plugins import Register


def setup(context: ResourceContext) -> None:
    """Offer command ``state``; its retained echo on ``data/<name>/state`` is the sign's state."""

    def on_state(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        context.logger.info("Turning %s my taxi sign.", "on" if payload == "True" else "off")

    context.resource.register_incoming_command("state", on_state, defaultvalue=False, send_echo_as_retained=True)


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    """Offer the resource type ``taxisign``."""
    register("taxisign", setup, description="a taxi sign: command state True/False, echoed retained")
