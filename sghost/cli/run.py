"""``sghost run TYPE``: one resource of an installed type in the foreground, without a manifest.

For trying and debugging a plugin. The resource runs in a forked process with
the code it runs under ``sghost start`` (:func:`sghost.process.child.run_child`:
the same Resource, the same loop), its log on the terminal. This process
prints what the resource reports on its events pipe (set up, connected, errors)
and turns Ctrl-C (SIGINT) or SIGTERM into the SIGTERM a resource stops on: it
publishes presence ``False`` and the command exits with the resource's exit
code, 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sghost.process import events
from sghost.process.lines import LineSplitter
from sghost.process.oslevel import status_from_wait
from sghost.process.spec import ChildSpec

EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_BROKER = "localhost:1883"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class RunError(Exception):
    """Bad arguments or settings; ``str()`` says which and why."""


def add_run_parser(subparsers: Any) -> None:
    """Add ``run TYPE [--name N] [--set key=value ...] [--settings-file F] [--broker host:port]``."""
    parser = subparsers.add_parser(
        "run",
        help="run one resource of an installed type in the foreground, without a manifest (Ctrl-C stops it)",
        description="Run one resource of type TYPE as sghost start would run it, with its log on the terminal. "
        "Settings come from --settings-file (a TOML file whose top level is the settings table), then each "
        "--set key=value (the value read as a TOML value when it is one, else as a string; dotted keys make "
        "tables). They are checked by the type's check_settings first. Ctrl-C stops the resource cleanly.",
    )
    parser.add_argument("type_name", metavar="TYPE", help="a resource type of an installed plugin (sghost plugins)")
    parser.add_argument("--name", help="the resource's MQTT name (default: TYPE)")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="one setting, e.g. interval=5 or port=/dev/ttyUSB0 (repeatable)")
    parser.add_argument("--settings-file", type=Path, metavar="FILE", help="a TOML file holding the settings")
    parser.add_argument("--broker", default=DEFAULT_BROKER, metavar="HOST[:PORT]",
                        help=f"the MQTT broker (default: {DEFAULT_BROKER})")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS)
    parser.set_defaults(handler=run_resource_command)


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value when it is one (``5``, ``true``, ``[1, 2]``, ``"x"``), else the text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_assignment(settings: dict[str, Any], assignment: str) -> None:
    """Apply one ``key=value`` (``a.b=1`` sets ``settings["a"]["b"]``)."""
    key, equals, text = assignment.partition("=")
    parts = [part.strip() for part in key.split(".")]
    if not equals or not all(parts):
        raise RunError(f"--set {assignment!r}: expected KEY=VALUE, e.g. interval=5")
    table = settings
    for depth, part in enumerate(parts[:-1]):
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            raise RunError(f"--set {assignment!r}: {'.'.join(parts[:depth + 1])} is {inner!r}, not a table")
        table = inner
    table[parts[-1]] = parse_value(text.strip())


def read_settings(settings_file: Path | None, assignments: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if settings_file is not None:
        try:
            with settings_file.open("rb") as stream:
                settings = tomllib.load(stream)
        except OSError as error:
            raise RunError(f"--settings-file {str(settings_file)!r}: cannot read it: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise RunError(f"--settings-file {str(settings_file)!r}: not valid TOML: {error}") from None
    for assignment in assignments:
        apply_assignment(settings, assignment)
    return settings


def build_spec(args: argparse.Namespace, settings: Mapping[str, Any]) -> ChildSpec:
    from sgframework.topics import validate_name
    from sghost.cli.fleet import parse_broker

    name = args.name if args.name is not None else args.type_name
    try:
        validate_name(name, "resource name")
    except ValueError as error:
        raise RunError(f"--name: {error}") from None
    try:
        host, port = parse_broker(args.broker)
    except ValueError as error:
        raise RunError(f"--broker {error}") from None
    return ChildSpec(name=name, type_name=args.type_name, settings=dict(settings), host=host, port=port,
                     log_level=args.log_level)


def run_resource_command(args: argparse.Namespace) -> int:
    from sghost.config.checked import load_registry

    registry = load_registry()
    try:
        if args.type_name not in registry.types:
            raise RunError(registry.missing_type_reason(args.type_name))
        settings = read_settings(args.settings_file, args.assignments)
        spec = build_spec(args, settings)
        problems = registry.check_settings(spec.name, spec.type_name, spec.settings)
        if problems:
            raise RunError("\n".join(f"settings: {problem}" for problem in problems))
    except RunError as error:
        for line in str(error).splitlines():
            print(f"sghost run: {line}", file=sys.stderr)
        return EXIT_USAGE
    print(f"sghost run: resource {spec.name!r} of type {spec.type_name!r} on {spec.host}:{spec.port}; "
          "Ctrl-C stops it", file=sys.stderr)
    return ForegroundResource(spec, registry).run()


class ForegroundResource:
    """A forked resource process and this process as its supervisor: signals in, events out to the terminal."""

    def __init__(self, spec: ChildSpec, registry: Any) -> None:
        self.spec = spec
        self.registry = registry
        self.pid = 0
        self.interrupts = 0

    def run(self) -> int:
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # SIGTERM stays blocked in the child until run_child has installed its handler (as under the zygote).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        self.pid = os.fork()
        if self.pid == 0:
            os.close(read_end)
            self._become_resource(write_end)
        os.close(write_end)
        previous = {signum: signal.signal(signum, self._forward) for signum in (signal.SIGINT, signal.SIGTERM)}
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        try:
            self._report_events(read_end)
            _pid, status = os.waitpid(self.pid, 0)
        finally:
            os.close(read_end)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        code = status_from_wait(status)
        if code < 0:
            print(f"sghost run: the resource process was killed by signal {-code}", file=sys.stderr)
            return 128 - code
        if code != EXIT_OK:
            print(f"sghost run: the resource process exited with code {code}", file=sys.stderr)
        return code

    def _become_resource(self, event_fd: int) -> None:
        """In the forked child: the same entry point the zygote calls for a resource."""
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent decides
            from sghost.process.child import configure_child_logging, run_child

            configure_child_logging(self.spec.log_level)
            code = run_child(self.spec, self.registry, events.EventWriter(event_fd), [])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _forward(self, signum: int, frame: object) -> None:
        self.interrupts += 1
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL if self.interrupts > 2 else signal.SIGTERM)

    def _report_events(self, fd: int) -> None:
        """Print what the resource reports until its events pipe closes (it exited)."""
        splitter = LineSplitter()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            for line in splitter.feed(data):
                event = events.parse_event(line)
                if event is not None:
                    self._print_event(event)

    def _print_event(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        where = f"{self.spec.host}:{self.spec.port}"
        if kind == events.READY:
            topics = event.get("topics") or []
            print(f"sghost run: set up; announces {len(topics)} topic(s): {', '.join(topics) or '-'}",
                  file=sys.stderr)
        elif kind == events.CONNECTED:
            print(f"sghost run: connected to {where}", file=sys.stderr)
        elif kind == events.DISCONNECTED:
            print(f"sghost run: disconnected from {where}", file=sys.stderr)
        elif kind in (events.CONNECT_ERROR, events.PLUGIN_ERROR):
            label = "broker" if kind == events.CONNECT_ERROR else "plugin error"
            print(f"sghost run: {label}: {event.get('text', '')}", file=sys.stderr)
