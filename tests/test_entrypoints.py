"""sghost.entrypoints reads entry points as importlib.metadata does, without its imports."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from sghost import entrypoints


@pytest.mark.parametrize("group", ["sghost", "console_scripts"])
def test_the_installed_entry_points_are_those_importlib_metadata_finds(group: str) -> None:
    def facts(points: object) -> list[tuple[str, str, str | None, str | None]]:
        return sorted((p.name, p.value, p.dist.name, p.dist.version) for p in points)  # type: ignore[attr-defined]

    assert facts(entrypoints.entry_points(group)) == facts(importlib.metadata.entry_points(group=group))


def write_distribution(directory: Path, folder: str, metadata_file: str, name: str, entry_points: str) -> None:
    metadata = directory / folder
    metadata.mkdir(parents=True)
    (metadata / metadata_file).write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 2.0\n\nName: not-this\n")
    (metadata / "entry_points.txt").write_text(entry_points)


def test_groups_targets_extras_and_the_first_copy_of_a_distribution(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_distribution(
        first, "demo_dist-2.0.dist-info", "METADATA", "demo-dist",
        "[console_scripts]\nother = x:y\n\n[sghost]\n# a comment\nplain = json\n"
        "nested = json:JSONDecoder.decode [extra]\n",
    )
    write_distribution(second, "Demo.Dist-1.0.dist-info", "METADATA", "Demo.Dist", "[sghost]\nshadowed = json\n")
    write_distribution(second, "legacy.egg-info", "PKG-INFO", "legacy", "[sghost]\nold = json\n")
    found = entrypoints.entry_points("sghost", [str(first), str(second), str(tmp_path / "missing")])
    assert [(p.name, p.dist) for p in found] == [
        ("plain", entrypoints.Distribution("demo-dist", "2.0")),
        ("nested", entrypoints.Distribution("demo-dist", "2.0")),
        ("old", entrypoints.Distribution("legacy", "2.0")),
    ]
    assert found[0].load() is sys.modules["json"]
    assert found[1].load() is sys.modules["json"].JSONDecoder.decode


def test_a_bad_target_says_what_is_expected() -> None:
    point = entrypoints.EntryPoint("bad", "not a module!", "sghost")
    with pytest.raises(ValueError, match="is not 'module' or 'module:attribute'"):
        point.load()
