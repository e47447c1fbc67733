"""``sghost deploy rollout``: the pure parts — host lists, prefix templates, batches, the result table.

The MQTT side is :mod:`sghost.cli.deployfollow`; this module decides which
hosts get their document when, and shows what became of each.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sgframework.topics import validate_name
from sghost.cli.statusview import NONE, format_table

HOST_PLACEHOLDER = "{host}"
NOT_STARTED = "not started"
"""The final state shown for a host the rollout never pushed to."""
UNKNOWN = "unknown"
"""The final state shown for a host pushed to when the connection to the broker was lost."""
ROLLOUT_COLUMNS = ("HOST", "STATE", "GENERATION", "ID", "REASON")


def parse_hosts(text: str) -> list[str]:
    """``gw1,gw2,...`` -> the host names in order; ValueError for an empty, invalid or repeated name."""
    hosts = [part.strip() for part in text.split(",")]
    seen: set[str] = set()
    for host in hosts:
        if not host:
            raise ValueError(f"{text!r}: an empty host name; expected names separated by commas, e.g. gw1,gw2")
        validate_name(host, "host name")
        if host in seen:
            raise ValueError(f"{text!r}: {host!r} is listed twice; expected each host once")
        seen.add(host)
    return hosts


def check_prefix_template(template: str) -> str:
    """A ``--prefix-template`` such as ``gateways/{host}/``: topic levels ending in ``/``, no ``+`` or ``#``.

    ``{host}`` is the only placeholder; an empty template means the hosts' own topics on that broker.
    """
    if not template:
        return template
    rest = template.replace(HOST_PLACEHOLDER, "")
    if not template.endswith("/") or template.startswith("/") or any(char in rest for char in "+#{}"):
        raise ValueError(
            f"{template!r}: expected topic levels ending in '/', with {HOST_PLACEHOLDER} as the only "
            "placeholder and no '+' or '#', e.g. 'gateways/{host}/'"
        )
    return template


def expand(template: str, host: str) -> str:
    """``template`` with every ``{host}`` replaced by ``host`` (no other formatting: braces elsewhere stay)."""
    return template.replace(HOST_PLACEHOLDER, host)


@dataclass(frozen=True)
class HostResult:
    """What became of one host: its final state and the last progress it reported."""

    state: str
    generation: int | None = None
    deployment_id: str | None = None
    reason: str | None = None

    @property
    def successful(self) -> bool:
        return self.state == "successful"


def check_batch_options(batch: int, max_failed: int) -> None:
    """ValueError unless ``batch`` is at least 1 and ``max_failed`` at least 0."""
    if batch < 1:
        raise ValueError(f"--batch {batch}: expected at least 1 host per batch")
    if max_failed < 0:
        raise ValueError(f"--max-failed {max_failed}: expected 0 or more")


def run_batches(
    hosts: Sequence[str],
    batch: int,
    max_failed: int,
    run_batch: Callable[[list[str]], Mapping[str, HostResult]],
) -> dict[str, HostResult]:
    """Run ``run_batch`` on ``batch`` hosts at a time, in order, until more than ``max_failed`` have failed.

    A host counts as failed unless its result is ``successful``. Hosts of
    batches never started get :data:`NOT_STARTED`. Returns a result per host, in order.
    """
    check_batch_options(batch, max_failed)
    results: dict[str, HostResult] = {}
    failed = 0
    for start in range(0, len(hosts), batch):
        group = list(hosts[start : start + batch])
        if failed > max_failed:
            results.update((host, HostResult(NOT_STARTED)) for host in group)
            continue
        outcome = run_batch(group)
        for host in group:
            result = outcome[host]
            results[host] = result
            failed += 0 if result.successful else 1
    return results


def format_results(results: Mapping[str, HostResult]) -> str:
    """The table HOST STATE GENERATION ID REASON, one row per host in the order given."""
    rows = [
        [
            host,
            result.state,
            NONE if result.generation is None else str(result.generation),
            result.deployment_id or NONE,
            result.reason or NONE,
        ]
        for host, result in results.items()
    ]
    return format_table(ROLLOUT_COLUMNS, rows)
