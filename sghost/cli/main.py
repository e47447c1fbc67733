"""The ``sghost`` command line: start, check, plugins, status and control of a running host."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from sghost import __version__
from sghost.cli.generations import load_start
from sghost.cli.parser import ArgumentParser
from sghost.config.checked import load_checked, load_registry
from sghost.config.manifest import ManifestError, load_manifest
from sghost.plugins import format_plugins

DEFAULT_MANIFEST = "hostconfig.toml"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only_start=arguments[:1] == ["start"])
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    return int(args.handler(args))


def build_parser(only_start: bool = False) -> argparse.ArgumentParser:
    """The command line; ``only_start`` leaves out every other command's parser and module.

    ``sghost start`` parses the same with or without them, and the supervisor then does
    not carry the other commands' modules for its whole life (about 0.6 MiB).
    """
    parser = ArgumentParser(prog="sghost", description="Run Secure Gateway resources as supervised processes.")
    parser.add_argument("--version", action="version", version=f"sghost {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    start = commands.add_parser("start", help="run the host in the foreground, or start one resource of a running host")
    start.add_argument("resource", nargs="?", help="start this resource (or 'all') of the running host")
    _add_manifest_option(start)
    start.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    start.set_defaults(handler=_start)
    if not only_start:
        _add_other_commands(commands)
    return parser


def _add_other_commands(commands: Any) -> None:
    from sghost.cli.acl import add_acl_parser
    from sghost.cli.certs import add_certs_parser
    from sghost.cli.deploy import add_deploy_parser
    from sghost.cli.generations import add_deploy_status, add_generations_parsers
    from sghost.cli.logs import add_logs_parser
    from sghost.cli.metrics import add_metrics_parser
    from sghost.cli.newplugin import add_new_plugin_parser
    from sghost.cli.rebirth import add_rebirth_parser
    from sghost.cli.run import add_run_parser

    check = commands.add_parser("check", help="validate the manifest and that every resource's plugin is installed")
    _add_manifest_option(check)
    check.set_defaults(handler=_check)

    plugins = commands.add_parser("plugins", help="list installed resource plugins")
    plugins.set_defaults(handler=_plugins)
    add_certs_parser(commands)
    add_new_plugin_parser(commands)
    add_run_parser(commands)
    add_acl_parser(commands, _add_manifest_option)
    _add_control_commands(commands)
    add_logs_parser(commands, _add_manifest_option)
    add_rebirth_parser(commands, _add_manifest_option)
    add_metrics_parser(commands, DEFAULT_MANIFEST)
    add_generations_parsers(commands, _add_manifest_option)
    add_deploy_status(add_deploy_parser(commands), _add_manifest_option)


def _add_control_commands(commands: Any) -> None:
    """``status``, ``restart``, ``stop`` and ``reload``: talk to the running host over its control socket."""
    from sghost.cli.brokeroptions import add_credential_options

    status = commands.add_parser(
        "status",
        help="show the running host's resources; with --all, every sghost host on a broker",
        description="Show each resource's state, pid, restarts, uptime, CPU, memory and last error. "
        "Exits 1 when no sghost runs for the manifest.",
    )
    _add_manifest_option(status)
    status.add_argument("--json", action="store_true", help="print the status document as JSON, for scripts")
    status.add_argument(
        "--all", action="store_true",
        help="list every sghost host on a shared broker, from their retained health",
    )
    status.add_argument(
        "--broker", metavar="HOST[:PORT]",
        help="with --all: the broker to ask (default: [broker] host and port of the manifest)",
    )
    add_credential_options(status)
    status.add_argument(
        "--prefix", default="", metavar="PREFIX",
        help="with --all: the topic prefix the gateways' uplinks use on that broker, e.g. 'gateways/+/'",
    )
    status.add_argument(
        "--timeout", type=float, default=5.0, metavar="S",
        help="seconds to wait for the host or the broker (default: 5)",
    )
    status.set_defaults(handler=_status)

    for op, text in (("restart", "restart"), ("stop", "stop")):
        parser = commands.add_parser(op, help=f"{text} one resource (or 'all') of the running host")
        parser.add_argument("resource", help="a resource name, or 'all'")
        _add_manifest_option(parser)
        parser.set_defaults(handler=_control, op=op)

    reload = commands.add_parser(
        "reload",
        help="make the running host re-read its manifest (like SIGHUP)",
        description="Start added resources, stop removed ones, restart changed ones; "
        "a manifest with problems is rejected and nothing changes (exit 1).",
    )
    _add_manifest_option(reload)
    reload.set_defaults(handler=_control, op="reload", resource=None)


def _status(args: argparse.Namespace) -> int:
    import json

    if args.all:
        return _fleet_status(args)
    from sghost.cli.brokeroptions import credential_flags

    needs_all = (["--broker"] if args.broker else []) + (["--prefix"] if args.prefix else []) + credential_flags(args)
    if needs_all:
        print(f"sghost status: {_requires(needs_all, '--all')}", file=sys.stderr)
        return EXIT_CONFIG
    from sghost.cli.client import request
    from sghost.cli.statusview import format_status
    from sghost.host.control import ControlError

    try:
        answer = request(args.config, {"op": "status"}, timeout=args.timeout)
    except ControlError as error:
        print(f"sghost status: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not answer.get("ok") or not isinstance(answer.get("status"), dict):
        print(f"sghost status: {answer.get('message') or answer.get('error') or answer}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(answer["status"], indent=2, sort_keys=True))
    else:
        print(format_status(answer["status"]))
    return EXIT_OK


def _fleet_status(args: argparse.Namespace) -> int:
    import json

    from sgframework.addresses import broker_addresses
    from sghost.cli.brokeroptions import broker_credentials, credential_flags, given_credentials
    from sghost.cli.fleet import FleetError, check_prefix, collect_fleet, format_fleet, parse_broker

    try:
        check_prefix(args.prefix)
    except ValueError as error:
        print(f"sghost status: --prefix {error}", file=sys.stderr)
        return EXIT_CONFIG
    credentials: dict[str, Any] = {}
    given_flags = credential_flags(args)
    if args.broker:
        try:
            host, port = parse_broker(args.broker)
        except ValueError as error:
            print(f"sghost status: --broker {error}", file=sys.stderr)
            return EXIT_CONFIG
        given = given_credentials(args)
        if isinstance(given, str):
            print(given, file=sys.stderr)
            return EXIT_CONFIG
        credentials = broker_credentials(given)
    elif given_flags:
        print(f"sghost status: {_requires(given_flags, '--broker')} "
              "(without it, the manifest's [broker] credentials are used)", file=sys.stderr)
        return EXIT_CONFIG
    else:
        try:
            broker = load_manifest(args.config).broker
        except ManifestError as error:
            print(f"sghost status --all: give --broker HOST[:PORT], or a valid manifest:\n{error}", file=sys.stderr)
            return EXIT_CONFIG
        host, port = broker_addresses(broker.host, broker.port)[0]
        credentials = broker_credentials(broker)
    try:
        fleet = collect_fleet(host, port, timeout=args.timeout, prefix=args.prefix, **credentials)
    except (FleetError, OSError) as error:
        print(f"sghost status --all: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(fleet, indent=2, sort_keys=True))
    else:
        print(format_fleet(fleet))
    if not fleet:
        print(f"sghost status --all: no sghost host publishes health on {host}:{port}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _requires(flags: list[str], other: str) -> str:
    return f"{', '.join(flags)} {'needs' if len(flags) == 1 else 'need'} {other}"


def _control(args: argparse.Namespace) -> int:
    from sghost.cli.client import send_command

    return send_command(args.config, args.op, args.resource)


def _add_manifest_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", default=DEFAULT_MANIFEST, metavar="MANIFEST",
        help=f"the host manifest (default: ./{DEFAULT_MANIFEST})",
    )


def _check(args: argparse.Namespace) -> int:
    from sghost.cli.checkreport import report_check

    registry = load_registry()
    try:
        config = load_checked(args.config, registry, strict_types=True)
    except ManifestError as error:
        print(error, file=sys.stderr)
        for plugin in registry.failed:
            print(f'plugin "{plugin.name}" ({plugin.source}) failed to load: {plugin.error}', file=sys.stderr)
        return EXIT_CONFIG
    if not report_check(config):
        return EXIT_CONFIG
    print(f"{config.path}: OK, host {config.name!r}, {len(config.resources)} resource(s)")
    return EXIT_OK


def _plugins(args: argparse.Namespace) -> int:
    registry = load_registry()
    print(format_plugins(registry))
    return EXIT_FAILURE if registry.failed else EXIT_OK


def _start(args: argparse.Namespace) -> int:
    if args.resource:
        from sghost.cli.client import send_command

        return send_command(args.config, "start", args.resource)
    configure_logging(args.log_level)
    loaded = load_start(args.config)
    if loaded is None:
        return EXIT_CONFIG
    config, registry, plan = loaded
    from sghost.host.supervisor import Supervisor

    supervisor = Supervisor(config, registry)
    supervisor.start_plan = plan
    return supervisor.run()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    if level != "DEBUG":
        logging.getLogger("sghost.mqtt").setLevel(logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
