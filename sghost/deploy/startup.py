"""Which manifest ``sghost start`` runs when deployments are on: the current generation's.

The manifest given with ``-c`` names the place (its directory is the base of
relative paths, its control socket the host's) and its ``[deploy]`` table says
where the generations live. The first start with deployments on records that
manifest as generation 1, so that there is always a generation to go back to.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sghost.config.deploy import deployments_on
from sghost.config.manifest import load_manifest
from sghost.deploy.generations import Generation, GenerationStore, recover

log = logging.getLogger("sghost.deploy")


@dataclass
class StartPlan:
    """The generation to run, and what a crash left to report once the meta-resource is up."""

    store: GenerationStore
    generation: Generation
    notes: list[tuple[Generation, str, str]] = field(default_factory=list)
    resume: Generation | None = None

    @property
    def site(self) -> Path | None:
        return self.generation.site if self.generation.packages else None

    def candidates(self) -> list[Generation]:
        """The current generation, then the earlier complete ones, newest first (if the current one fails to load)."""
        older = [g for g in self.store.generations() if g.complete and g.number < self.generation.number]
        return [self.generation, *reversed(older)]

    def use_site(self) -> None:
        """Put the generation's packages first on ``sys.path``, before any plugin is imported."""
        if self.site is not None and str(self.site) not in sys.path:
            sys.path.insert(0, str(self.site))


def plan_start(path: str) -> StartPlan | None:
    """None when the manifest has no ``[deploy] enabled = true`` (or does not load: the caller reports that)."""
    try:
        config = load_manifest(path)
    except Exception:
        return None
    if not deployments_on(config):
        return None
    store = GenerationStore(config.deploy.state_dir, config.deploy.keep_generations)
    if store.current() is None:
        text = Path(config.path).read_text(encoding="utf-8")
        first = store.create(text, 0, None, None, state="successful")
        first = store.update(first, complete=True)
        store.switch(first)
        log.info("deployments on: %s recorded as generation %d in %s", config.path, first.number, store.root)
    notes, resume = recover(store)
    current = store.current()
    assert current is not None
    for generation, state, reason in notes:
        log.warning("deployment %s (generation %d): %s: %s", generation.id, generation.number, state, reason)
    log.info("deployments on: starting generation %d (%s)", current.number, current.manifest_path)
    return StartPlan(store, current, notes, resume)
