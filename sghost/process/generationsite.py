"""A resource process on a deployed generation's packages (``ChildSpec.site_dir``).

Plugins are imported by the supervisor before the zygote forks (docs/architecture.md,
"Why a zygote"), so a process forked after a deployment changed a plugin package
still has the old code in memory. Here, in the resource's own process and before
its type is looked up, the generation's ``site`` directory goes first on
``sys.path``; when it holds a distribution in another version than the one
imported (or one not imported at all), the modules of the site's distributions
are dropped from ``sys.modules`` and the plugins are loaded again, so the
resource runs the new code. A process whose plugins already match costs nothing.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sghost.plugins import PluginRegistry

if TYPE_CHECKING:
    import importlib.metadata

# importlib.metadata (with zipfile, csv and email, about 5 ms) is imported where a generation's
# site is read: this module is in the zygote, which every resource process starts from.

log = logging.getLogger("sghost.generationsite")


def _normalized(name: str | None) -> str:
    return re.sub(r"[-_.]+", "-", name or "").lower()


def _top_level_modules(distribution: importlib.metadata.Distribution) -> set[str]:
    names = set()
    for file in distribution.files or []:
        first = file.parts[0] if file.parts else ""
        if not first or first.endswith((".dist-info", ".data")) or first in ("..", "__pycache__"):
            continue
        names.add(first[:-3] if first.endswith(".py") else first)
    return names


def _shadowed(site: str, modules: set[str]) -> list[str]:
    """Imported modules (and submodules) of ``modules`` that were not loaded from ``site``."""
    stale = []
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in modules:
            continue
        origin = getattr(module, "__file__", None) or ""
        if not os.path.abspath(origin).startswith(os.path.abspath(site) + os.sep):
            stale.append(name)
    return stale


def registry_for_site(registry: PluginRegistry, site: str | None) -> PluginRegistry:
    """``registry``, or a new one loaded with the generation's packages first (see the module's text)."""
    if not site or not Path(site).is_dir():
        return registry
    if site not in sys.path:
        sys.path.insert(0, site)
    import importlib.metadata

    distributions = list(importlib.metadata.distributions(path=[site]))
    loaded = {(_normalized(info.distribution), info.version) for info in registry.plugins if info.distribution}
    modules = set().union(*(_top_level_modules(d) for d in distributions)) if distributions else set()
    stale = _shadowed(site, modules)
    plugins_match = all(
        (_normalized(d.metadata["Name"]), d.version) in loaded
        for d in distributions if any(ep.group == "sghost" for ep in d.entry_points)
    )
    if plugins_match and not stale:
        return registry
    for name in stale:
        del sys.modules[name]
    importlib.invalidate_caches()
    fresh = PluginRegistry()
    fresh.load()
    log.debug("plugins loaded again with %s first on sys.path", site)
    return fresh
