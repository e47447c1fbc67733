"""Deployments on this gateway, from its command line: ``sghost generations``, ``sghost rollback``,
``sghost deploy status``; and the start-up that runs the current generation.

``generations`` and ``deploy status`` read ``[deploy] state_dir`` directly (they
work whether or not sghost runs); ``rollback`` asks the running host over its
control socket, because the rollback is applied and verified like a deployment,
then follows the state file until the rollback has ended.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from sghost.config.checked import load_checked, load_registry
from sghost.config.deploy import deployments_on
from sghost.config.manifest import HostConfig, ManifestError, load_manifest
from sghost.deploy.generations import GenerationStore
from sghost.deploy.startup import StartPlan, plan_start
from sghost.plugins import PluginRegistry

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_TIMEOUT = 3
FINAL_STATES = ("rejected", "successful", "rolled-back", "failed")
log = logging.getLogger("sghost.deploy")


def load_start(path: str) -> tuple[HostConfig, PluginRegistry, StartPlan | None] | None:
    """The config ``sghost start`` runs: the manifest's, or with deployments on the current generation's.

    A generation whose manifest no longer loads is passed over for the one before it (and said so).
    Prints the problems and returns None when nothing loads.
    """
    plan = plan_start(path)
    if plan is not None:
        plan.use_site()
    registry = load_registry()
    if plan is None:
        try:
            return load_checked(path, registry, strict_types=False), registry, None
        except ManifestError as error:
            print(error, file=sys.stderr)
            return None
    for generation in plan.candidates():
        try:
            config = load_checked(path, registry, strict_types=False, text=generation.manifest_text())
        except (ManifestError, OSError) as error:
            log.error("generation %d does not load; trying the one before:\n%s", generation.number, error)
            continue
        if generation.number != plan.generation.number:
            plan.store.switch(generation)
            plan.notes.append((plan.generation, "failed", f"generation {plan.generation.number} does not load; "
                               f"generation {generation.number} runs"))
            plan.generation, plan.resume = generation, None
        return config, registry, plan
    print(f"{path}: no generation in {plan.store.root} loads", file=sys.stderr)
    return None


def add_generations_parsers(commands: Any, add_manifest_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """``generations [--json]`` and ``rollback [GENERATION]``."""
    generations = commands.add_parser(
        "generations", help="list the deployed generations of this gateway (the current one marked *)",
        description="Each generation: number, sequence, deployment id, when, state. Read from [deploy] state_dir.",
    )
    add_manifest_option(generations)
    generations.add_argument("--json", action="store_true", help="print a JSON array, the current one with current")
    generations.set_defaults(handler=generations_command)
    rollback = commands.add_parser(
        "rollback", help="switch the running host back to an earlier generation (applied and verified)",
        description="Reported on data/<host>/deployment like a deployment; exits 0 once successful, "
        "1 if it was rolled back or failed, 3 on timeout.",
    )
    rollback.add_argument("generation", nargs="?", type=int, metavar="GENERATION",
                          help="the generation number (default: the one before the current one)")
    add_manifest_option(rollback)
    rollback.add_argument("--timeout", type=float, default=120.0, metavar="S",
                          help="seconds to wait for the outcome (default: 120)")
    rollback.set_defaults(handler=rollback_command)


def add_deploy_status(deploy_commands: Any, add_manifest_option: Callable[[argparse.ArgumentParser], None]) -> None:
    """``deploy status [--json]`` under the ``deploy`` subparser."""
    status = deploy_commands.add_parser(
        "status", help="the last deployment's state on this gateway, and the generation in force",
    )
    add_manifest_option(status)
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    status.set_defaults(handler=deploy_status_command)


def _store(path: str, command: str) -> GenerationStore | None:
    try:
        config = load_manifest(path)
    except ManifestError as error:
        print(error, file=sys.stderr)
        return None
    if not deployments_on(config):
        print(f"sghost {command}: deployments are off in {config.path}; expected [deploy] enabled = true",
              file=sys.stderr)
        return None
    return GenerationStore(config.deploy.state_dir, config.deploy.keep_generations)


def generations_command(args: argparse.Namespace) -> int:
    store = _store(args.config, "generations")
    if store is None:
        return EXIT_CONFIG
    current = store.current()
    rows = [
        {**generation.as_dict(), "current": current is not None and generation.number == current.number}
        for generation in store.generations()
    ]
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"  {'GEN':>4}  {'SEQUENCE':>14}  {'ID':<12}  {'WHEN':<20}  STATE")
    for row in rows:
        mark = "*" if row["current"] else " "
        reason = f"  ({row['reason']})" if row["reason"] else ""
        print(f"{mark} {row['number']:>4}  {row['sequence']:>14}  {row['id'] or '-':<12}  {row['when']:<20}  "
              f"{row['state']}{reason}")
    return EXIT_OK


def deploy_status_command(args: argparse.Namespace) -> int:
    store = _store(args.config, "deploy status")
    if store is None:
        return EXIT_CONFIG
    status = store.read_status()
    current = store.current()
    document = {"last": status.get("last"), "highest_sequence": status.get("highest_sequence", 0),
                "current": current.as_dict() if current is not None else None}
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
        return EXIT_OK
    last = document["last"]
    if last:
        print(f"deployment {last.get('id') or '-'} (sequence {last.get('sequence')}): {last.get('state')} "
              f"at {last.get('at')}")
        if last.get("reason"):
            print(f"  reason: {last['reason']}")
    else:
        print("no deployment yet")
    if current is not None:
        print(f"generation {current.number} in force (sequence {current.sequence}, id {current.id or '-'}, "
              f"{current.state})")
    return EXIT_OK


def rollback_command(args: argparse.Namespace) -> int:
    from sghost.cli.client import request
    from sghost.host.control import ControlError

    store = _store(args.config, "rollback")
    if store is None:
        return EXIT_CONFIG
    before = store.read_status().get("last")
    try:
        answer = request(args.config, {"op": "rollback", "generation": args.generation}, timeout=30)
    except ControlError as error:
        print(f"sghost rollback: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if not answer.get("ok"):
        print(f"sghost rollback: {answer.get('error') or answer.get('message')}", file=sys.stderr)
        return EXIT_FAILURE
    print(answer.get("message", ""))
    deadline = time.monotonic() + args.timeout
    shown = None
    while time.monotonic() < deadline:
        last = store.read_status().get("last")
        if last and last != before and last != shown:
            shown = last
            print(f"{last.get('state')}{': ' + last['reason'] if last.get('reason') else ''}")
            if last.get("state") in FINAL_STATES:
                return EXIT_OK if last["state"] == "successful" else EXIT_FAILURE
        time.sleep(0.2)  # the state file has no event to wait on
    print(f"sghost rollback: no outcome within {args.timeout:g} s; see sghost deploy status", file=sys.stderr)
    return EXIT_TIMEOUT
