"""Relative paths in a resource's settings are relative to the manifest's directory: in check_settings and setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sgframework import Resource
from sghost.config.manifest import load_manifest
from sghost.context import ResourceContext
from sghost.plugins import settings_directory


def test_check_settings_sees_the_manifests_directory(tmp_path: Path, monkeypatch: Any) -> None:
    directory = tmp_path / "etc"
    directory.mkdir()
    manifest = directory / "hostconfig.toml"
    manifest.write_text('[resources.a]\ntype = "t"\n[resources.a.settings]\nfile = "x.txt"\n')
    monkeypatch.chdir(tmp_path)
    seen: list[Path] = []

    def check(name: str, type_name: str, settings: dict[str, Any]) -> list[str]:
        seen.append(settings_directory())
        return []

    load_manifest("etc/hostconfig.toml", known_types={"t"}, check_settings=check)
    assert seen == [directory]
    assert settings_directory() == tmp_path  # outside a check: the current directory


def test_context_path_resolves_against_the_base_directory(tmp_path: Path) -> None:
    context = ResourceContext("r", {}, Resource("r", "127.0.0.1", 9), tmp_path)
    assert context.base_directory == tmp_path
    assert context.path("db/climate.kcd") == tmp_path / "db" / "climate.kcd"
    assert context.path("/abs/file") == Path("/abs/file")
    assert context.path("~/file") == Path.home() / "file"
    assert ResourceContext("r", {}, Resource("r", "127.0.0.1", 9)).base_directory == Path.cwd()
