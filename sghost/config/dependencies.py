"""Resource dependencies (``depends_on``): parsing and checking the graph, pure data in and out.

A resource starts once every resource it depends on is ready; at shutdown and
on ``stop all`` dependents stop before their dependencies. The manifest must
name only its own resources, never the resource itself, and never a cycle; a
problem names the chain, e.g. ``a -> b -> a``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sghost.config.parsing import Problems
from sghost.suggest import did_you_mean

Graph = Mapping[str, Sequence[str]]
"""Resource name -> the names it depends on (``depends_on``), in manifest order."""


def dependency_problems(graph: Graph) -> dict[str, str]:
    """What is wrong with ``graph``: resource name -> one message; empty when it is usable.

    Unknown names and self-dependencies are reported for each resource; each
    cycle once, under the first of its resources in manifest order.
    """
    problems: dict[str, str] = {}
    known = list(graph)
    for name, needs in graph.items():
        for need in needs:
            if need == name:
                problems[name] = f"depends on itself ({name} -> {name}); expected other resources' names"
                break
            if need not in graph:
                suggestion = did_you_mean(need, known)
                tail = f"; {suggestion}" if suggestion else ""
                problems[name] = (
                    f'unknown resource "{need}"; expected resources of this manifest: {", ".join(known)}{tail}'
                )
                break
    for cycle in _cycles(graph, skip=set(problems)):
        problems.setdefault(
            cycle[0], f"dependency cycle {' -> '.join(cycle)}; expected dependencies that do not lead back"
        )
    return problems


def _cycles(graph: Graph, skip: set[str]) -> list[list[str]]:
    """Every cycle found by a depth-first walk, each as a chain that ends where it began."""
    found: list[list[str]] = []
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name):], name])
            return
        if name in done or name in skip or name not in graph:
            return
        path.append(name)
        for need in graph[name]:
            walk(need, path)
        path.pop()
        done.add(name)

    for name in graph:
        if name not in done:
            walk(name, [])
    return found


def parse_depends_on(problems: Problems, keypath: str, value: Any) -> tuple[str, ...] | None:
    """Parse ``depends_on = ["a", "b"]``: resource names; None (after recording why) when not valid."""
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        problems.wrong_type(keypath, value, 'an array of resource names, e.g. depends_on = ["canbus"]')
        return None
    names = tuple(dict.fromkeys(value))
    if len(names) != len(value):
        problems.add(keypath, "names a resource twice; expected each dependency once")
        return None
    return names


def dependents_of(graph: Graph, name: str) -> list[str]:
    """The resources that depend on ``name`` directly."""
    return [other for other, needs in graph.items() if name in needs]


__all__ = ["Graph", "dependency_problems", "dependents_of", "parse_depends_on"]
