"""Resource types that misbehave on purpose, for the supervisor's tests.

Put ``tests/plugins`` on ``sys.path`` (and ``PYTHONPATH`` for child processes),
then ``SGHOST_PLUGINS=sghost_test_plugins`` or
``PluginRegistry().register(sghost_test_plugins, "sghost_test_plugins")``.

==========  =======================================================================
type        behaviour (settings)
==========  =======================================================================
echoer      command ``ping``, echoed (retained), default ``False``, like taxisign
crasher     ``setup`` raises ``RuntimeError("boom at start")``
exiter      after ``after`` s (0.5) calls ``os._exit(code)`` (3), via ``context.every``
hanger      command ``hang``: the callback blocks forever (for the watchdog)
hog         every 0.2 s allocates 20 MB more, up to ``mb`` MB (300)
counter     outgoing data ``count``: 1, 2, 3, ... every ``interval`` s (1.0)
flooder     command ``flood`` N: sends 1..N on ``data/<name>/n`` from the callback;
            echoes ``sent S refused R`` (R: sends that raised PublishError)
threadfail  command ``fail``: its worker thread (``run_in_thread``) raises
            ``RuntimeError("worker failed on purpose")`` once the callback has returned
==========  =======================================================================
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import sghost

if TYPE_CHECKING:
    from sghost.context import ResourceContext
    from sghost.plugins import Register

HOG_CHUNK_MB = 20


def setup_echoer(context: ResourceContext) -> None:
    """Command ``ping``, echoed retained, default ``False``."""

    def on_ping(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        context.logger.info("ping %s", payload)

    context.resource.register_incoming_command("ping", on_ping, defaultvalue=False, send_echo_as_retained=True)


def setup_crasher(context: ResourceContext) -> None:
    """Fail at start, every time."""
    raise RuntimeError("boom at start")


def setup_exiter(context: ResourceContext) -> None:
    """Exit the process abruptly with ``settings["code"]`` after ``settings["after"]`` seconds."""
    after = float(context.settings.get("after", 0.5))
    code = int(context.settings.get("code", 3))

    def leave() -> None:
        context.logger.info("exiting with code %d", code)
        os._exit(code)

    context.every(after, leave)


def setup_hanger(context: ResourceContext) -> None:
    """Command ``hang``: its callback never returns."""

    def on_hang(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        context.logger.info("hanging forever")
        threading.Event().wait()

    context.resource.register_incoming_command("hang", on_hang)


def setup_hog(context: ResourceContext) -> None:
    """Grow by 20 MB every 0.2 s until ``settings["mb"]`` MB are held."""
    limit_mb = int(context.settings.get("mb", 300))
    held: list[bytearray] = []

    def grow() -> None:
        if len(held) * HOG_CHUNK_MB < limit_mb:
            held.append(bytearray(HOG_CHUNK_MB * 1024 * 1024))  # zero-filled: the pages are touched

    context.every(0.2, grow)


def setup_counter(context: ResourceContext) -> None:
    """Send 1, 2, 3, ... on ``data/<name>/count`` every ``settings["interval"]`` seconds."""
    interval = float(context.settings.get("interval", 1.0))
    count = 0
    context.resource.register_outgoing_data("count")

    def tick() -> None:
        nonlocal count
        count += 1
        context.resource.send_data("count", count)

    context.every(interval, tick)


def setup_flooder(context: ResourceContext) -> None:
    """Command ``flood``: send as many messages as asked, back to back, from inside the callback."""
    from sgframework import PublishError

    context.resource.register_outgoing_data("n")

    def on_flood(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> str:
        sent = refused = 0
        for number in range(1, int(payload) + 1):
            try:
                resource.send_data("n", number)
                sent += 1
            except PublishError:
                refused += 1
        return f"sent {sent} refused {refused}"

    context.resource.register_incoming_command("flood", on_flood)


def setup_threadfail(context: ResourceContext) -> None:
    """Command ``fail``: the worker thread raises, after the main loop has gone back to sleep."""
    asked = threading.Event()

    def on_fail(resource: Any, messagetype: str, servicename: str, signalname: str, payload: str) -> None:
        asked.set()

    def worker(stopping: threading.Event) -> None:
        while not asked.wait(0.05):
            if stopping.is_set():
                return
        raise RuntimeError("worker failed on purpose")

    context.resource.register_incoming_command("fail", on_fail)
    context.run_in_thread(worker)


def _check_exiter(settings: Any) -> list[str]:
    problems = []
    if not isinstance(settings.get("after", 0.5), int | float):
        problems.append("after: expected a number of seconds")
    if not isinstance(settings.get("code", 3), int):
        problems.append("code: expected a whole number")
    return problems


@sghost.hookimpl
def register_resource_types(register: Register) -> None:
    """Offer the test resource types."""
    register("echoer", setup_echoer, description="command ping, echoed retained")
    register("crasher", setup_crasher, description="raises at start")
    register("exiter", setup_exiter, check_settings=_check_exiter, description="exits after a while")
    register("hanger", setup_hanger, description="command hang blocks forever")
    register("hog", setup_hog, description="grows its memory")
    register("counter", setup_counter, description="data count, every interval")
    register("flooder", setup_flooder, description="command flood N sends N messages from its callback")
    register("threadfail", setup_threadfail, description="command fail makes its worker thread raise")
