"""One taxisign resource in its own interpreter, as supervisord (or systemd) would run it.

``python bench/standalone_taxisign.py NAME HOST PORT``: builds an
``sgframework.Resource`` named NAME, lets the taxisign plugin set it up
through a ``sghost.context.ResourceContext``, and runs the same
single-threaded loop as an sghost child (``Resource.loop()`` plus the
context's timers) until SIGTERM, when it stops cleanly (presence ``False``).
bench/host.py starts N of these to compare with ``sghost start``.
"""

from __future__ import annotations

import logging
import signal
import sys

import paho.mqtt.client as mqtt

from sgframework import Resource
from sghost.context import ResourceContext
from sghost_taxisign import setup

LOOP_TIMEOUT = 0.25


def main(argv: list[str]) -> int:
    name, host, port = argv[1], argv[2], int(argv[3])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    resource = Resource(name, host, port)
    resource.protocol = mqtt.MQTTv311
    resource.timeout = LOOP_TIMEOUT
    context = ResourceContext(name, {}, resource)
    setup(context)
    resource.start(use_threaded_networking=False)
    context.start_threads()
    while not stopping:
        until_timer = context.run_due_timers()
        resource.timeout = LOOP_TIMEOUT if until_timer is None else max(0.0, min(LOOP_TIMEOUT, until_timer))
        resource.loop()
    context.run_cleanups()
    resource.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
