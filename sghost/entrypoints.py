"""The entry points of one group, read from the installed distributions without ``importlib.metadata``.

``importlib.metadata`` imports ``email``, ``zipfile`` and ``csv`` (about 1.2 MiB that the
supervisor would carry for its whole life) to offer much more than sghost needs: the
name, target, distribution and version of the entry points of group ``sghost``. This
reads the same files (``*.dist-info``/``*.egg-info`` directories on ``sys.path``:
``entry_points.txt``, and ``Name``/``Version`` from ``METADATA`` or ``PKG-INFO``) and,
like ``importlib.metadata.entry_points()``, takes a distribution only from the first
``sys.path`` entry that has it. Zipped distributions (eggs, wheels on ``sys.path``)
are not searched.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_SUFFIXES = (".dist-info", ".egg-info")
_TARGET = re.compile(r"^(?P<module>[\w.]+)\s*(?::\s*(?P<attribute>[\w.]+)\s*)?(?:\[.*\]\s*)?$")


@dataclass(frozen=True)
class Distribution:
    """An installed distribution, as far as sghost reports it."""

    name: str
    version: str | None


@dataclass(frozen=True)
class EntryPoint:
    """``name = value`` in ``[group]`` of a distribution's ``entry_points.txt``."""

    name: str
    value: str
    group: str
    dist: Distribution | None = None

    def load(self) -> Any:
        """Import the module the value names and return it, or the attribute after ``:``."""
        match = _TARGET.match(self.value)
        if match is None:
            raise ValueError(f"entry point {self.name!r}: {self.value!r} is not 'module' or 'module:attribute'")
        target: Any = importlib.import_module(match["module"])
        for part in (match["attribute"] or "").split("."):
            if part:
                target = getattr(target, part)
        return target


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """The entry points of ``group`` of every distribution on ``path`` (``sys.path``)."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path if path is None else path:
        for metadata_dir in _metadata_dirs(Path(entry or ".")):
            dist = _read_distribution(metadata_dir)
            key = _normalize(dist.name)
            if key in seen:
                continue
            seen.add(key)
            found += _read_entry_points(metadata_dir, group, dist)
    return found


def _metadata_dirs(directory: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:  # not a directory (a zip), missing, unreadable
        return []
    return [directory / name for name in names if name.endswith(METADATA_SUFFIXES)]


def _read_distribution(metadata_dir: Path) -> Distribution:
    """Name and version from the metadata headers; the directory's name when they are missing."""
    stem = metadata_dir.name.rsplit(".", 1)[0]
    name, _, version = stem.partition("-")
    headers: dict[str, str] = {}
    for file_name in ("METADATA", "PKG-INFO"):
        try:
            text = (metadata_dir / file_name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if not line.strip():
                break  # the headers end at the first empty line; the long description follows
            key, separator, value = line.partition(":")
            if separator and key in ("Name", "Version"):
                headers.setdefault(key, value.strip())
        break
    return Distribution(headers.get("Name") or name, headers.get("Version") or version or None)


def _read_entry_points(metadata_dir: Path, group: str, dist: Distribution) -> list[EntryPoint]:
    try:
        text = (metadata_dir / "entry_points.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found: list[EntryPoint] = []
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        name, separator, value = line.partition("=")
        if section == group and separator:
            found.append(EntryPoint(name.strip(), value.strip(), group, dist))
    return found


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()
