"""Dependencies at run time: who waits for whom, restarts with a dependency, and the order of stops.

- A resource starts only once each resource it ``depends_on`` is ready
  (:attr:`Watcher.ready`); until then it is ``waiting``.
- When a dependency dies, its dependents keep running; those with
  ``restart_with_dependencies = true`` are restarted once a new process of it is ready.
- Stopping several resources together (shutdown, ``stop all``, a reload that
  removes them) stops dependents before their dependencies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from sghost.config.dependencies import dependents_of
from sghost.host.watcher import RUNNING, STARTING, WAITING, Watcher

log = logging.getLogger("sghost")


class DependencyOrder:
    """Applies the manifest's ``depends_on`` to the supervisor's watchers (read live: reload changes them)."""

    def __init__(self, watchers: Mapping[str, Watcher], stopping: Callable[[], bool]) -> None:
        self.watchers = watchers
        self.stopping = stopping
        self._ready: dict[str, bool] = {}
        self._pending_stops: dict[str, None] = {}
        """Resources to stop once their dependents (stopped together with them) have no process."""
        self._advancing = False
        self._batch: set[str] = set()
        """Every resource of the stops under way (pending or told)."""

    def graph(self) -> dict[str, tuple[str, ...]]:
        return {name: watcher.config.depends_on for name, watcher in self.watchers.items()}

    def unready(self, watcher: Watcher) -> list[str]:
        """The dependencies of ``watcher`` that are not ready now, in manifest order."""
        return [need for need in watcher.config.depends_on if not self._is_ready(need)]

    def pids(self, watcher: Watcher) -> dict[str, int | None]:
        """The pid of each dependency, remembered when ``watcher`` starts."""
        return {need: self.watchers[need].pid for need in watcher.config.depends_on if need in self.watchers}

    def changed(self, watcher: Watcher) -> None:
        """Called at every state change of any resource."""
        ready = watcher.ready
        became_ready = ready and not self._ready.get(watcher.name, False)
        self._ready[watcher.name] = ready
        if self._pending_stops:
            self._advance_stops()
        if became_ready and not self.stopping():
            self.release_waiting()
            self._restart_dependents_of(watcher)

    def release_waiting(self) -> None:
        """Start every waiting resource whose dependencies are all ready now (start() re-checks)."""
        for watcher in list(self.watchers.values()):
            if watcher.state == WAITING and not self.stopping():
                watcher.start()

    def forget(self, name: str) -> None:
        self._ready.pop(name, None)
        self._pending_stops.pop(name, None)

    def stop_in_order(self, names: Iterable[str]) -> None:
        """Stop ``names``: each once the dependents among them have no process left."""
        for name in names:
            self._pending_stops[name] = None
            self._batch.add(name)
        self._advance_stops()

    def _is_ready(self, name: str) -> bool:
        watcher = self.watchers.get(name)
        return watcher is not None and watcher.ready

    def _restart_dependents_of(self, dependency: Watcher) -> None:
        for name in dependents_of(self.graph(), dependency.name):
            dependent = self.watchers[name]
            if not dependent.config.policy.restart_with_dependencies or dependent.state not in (STARTING, RUNNING):
                continue
            if dependent.dependency_pids.get(dependency.name) != dependency.pid:
                log.info(
                    "[%s] restarting: %s is ready again, pid %s (restart_with_dependencies)",
                    name, dependency.name, dependency.pid,
                )
                dependent.restart()

    def _advance_stops(self) -> None:
        if self._advancing:
            return  # a stop below changed a state; the loop picks that up
        self._advancing = True
        try:
            progress = True
            while progress:
                progress = False
                graph = self.graph()
                for name in list(self._pending_stops):
                    watcher = self.watchers.get(name)
                    if watcher is None:
                        del self._pending_stops[name]
                        continue
                    if any(self._blocks_stop(other) for other in dependents_of(graph, name)):
                        continue
                    del self._pending_stops[name]
                    watcher.stop()
                    progress = True
            if not self._pending_stops:
                self._batch = {name for name in self._batch if self._has_process(name)}
        finally:
            self._advancing = False

    def _blocks_stop(self, dependent: str) -> bool:
        """A dependent stopped in the same batch blocks its dependency until it has no process left."""
        watcher = self.watchers.get(dependent)
        if watcher is None or dependent not in self._batch:
            return False  # a dependent that is not being stopped follows the usual rule
        return dependent in self._pending_stops or watcher.has_process

    def _has_process(self, name: str) -> bool:
        watcher = self.watchers.get(name)
        return watcher is not None and watcher.has_process
