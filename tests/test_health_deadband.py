"""The dead bands that keep an idle host quiet on the broker."""

from __future__ import annotations

import pytest

from sghost.health.reporting import worth_reporting


@pytest.mark.parametrize(
    ("field", "reported", "value", "expected"),
    [
        ("one_state", "running", "running", False),
        ("one_state", "running", "backoff", True),
        ("one_pid", 41, 42, True),
        ("one_uptime", None, 0, True),
        ("one_uptime", 100, 105, False),
        ("one_uptime", 100, 110, True),
        ("one_uptime", 100, 3, True),  # restarted
        ("one_cpu", 0.0, 0.2, False),
        ("one_cpu", 0.0, 1.5, True),
        ("one_memory", 21.9, 22.3, False),
        ("one_memory", 21.9, 23.5, True),
        ("one_memory", 200.0, 209.0, False),
        ("one_memory", 200.0, 211.0, True),
        ("host.memory_available_mb", 2000, 2050, False),
        ("one_error", "none", "exit code 3", True),
    ],
)
def test_only_values_that_moved_enough_are_reported(
    field: str, reported: object, value: object, expected: bool
) -> None:
    assert worth_reporting(field, reported, value) is expected
