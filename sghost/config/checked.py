"""The manifest checked against the installed plugins: what ``sghost check``, ``start`` and reload load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sghost.config.manifest import HostConfig, load_manifest
from sghost.plugins import PluginRegistry


def load_registry() -> PluginRegistry:
    registry = PluginRegistry()
    registry.load()
    return registry


def load_checked(path: str, registry: PluginRegistry, strict_types: bool, text: str | None = None) -> HostConfig:
    """Load the manifest; with ``strict_types`` an unknown resource type is an error.

    ``sghost start`` is not strict when a plugin failed to load: the resources
    needing it become ``fatal`` with the plugin's error, and the others run.
    """
    known = set(registry.types)
    if strict_types or not any(plugin.error for plugin in registry.plugins):
        return load_manifest(path, known_types=known, check_settings=registry.check_settings, text=text)

    def check_installed_types(name: str, type_name: str, settings: Mapping[str, Any]) -> list[str]:
        return registry.check_settings(name, type_name, settings) if type_name in known else []

    return load_manifest(path, known_types=None, check_settings=check_installed_types, text=text)
