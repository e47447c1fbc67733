"""The manifest's ``[deploy]`` table: signed fleet deployments, off unless ``enabled = true``.

Parsed here (called from :func:`sghost.config.manifest.load_manifest`) so that the
manifest module only learns one more table. What a deployment does with it is in
:mod:`sghost.deploy.generations` (the files) and :mod:`sghost.host.deployments`
(the states).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sghost.config import parsing as p
from sghost.config.uplink import UplinkConfig, default_state_dir
from sghost.deploy import document

if TYPE_CHECKING:
    from sghost.config.manifest import HostConfig

DEFAULT_KEEP_GENERATIONS = 3
DEFAULT_VERIFY_SECONDS = 30.0


@dataclass(frozen=True)
class DeployConfig:
    """The ``[deploy]`` table."""

    enabled: bool = False
    trusted_keys: tuple[Path, ...] = ()
    state_dir: Path | None = None
    """Where generations live; the uplink's state directory unless set."""
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    """Directories (resolved against the manifest's directory) or URLs pip may take packages from."""
    keep_generations: int = DEFAULT_KEEP_GENERATIONS
    verify_seconds: float = DEFAULT_VERIFY_SECONDS

    @property
    def package_source(self) -> bool:
        """Whether pip has anywhere to take packages from."""
        return self.index_url is not None or bool(self.find_links)


def _trusted_keys(problems: p.Problems, keypath: str, value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        return problems.wrong_type(keypath, value, 'an array of paths to PEM public keys, e.g. ["fleet.pub"]')
    return tuple(problems.base / Path(item).expanduser() for item in value)


def _url(problems: p.Problems, keypath: str, value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith(("https://", "http://", "file://")):
        expected = "an http(s):// or file:// URL of a package index"
        return problems.add(keypath, f"got {p.describe(value)}; expected {expected}")
    return value


def _find_links(problems: p.Problems, keypath: str, value: Any) -> Any:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(item, str) and item for item in items):
        return problems.wrong_type(keypath, value, "a directory or URL, or an array of them (pip --find-links)")
    resolved = []
    for item in items:
        if "://" in item:
            resolved.append(item)
        else:
            resolved.append(str(problems.base / Path(item).expanduser()))
    return tuple(resolved)


_SPECS: dict[str, p.Parser] = {
    "enabled": p.boolean,
    "trusted_keys": _trusted_keys,
    "state_dir": p.file_path,
    "index_url": _url,
    "find_links": _find_links,
    "keep_generations": p.integer(2, 100),
    "verify_seconds": p.number(0, strict=True),
}


def read_deploy(
    problems: p.Problems, table: Mapping[str, Any], host_name: str, uplink: UplinkConfig | None
) -> DeployConfig | None:
    """Parse ``[deploy]`` (None when absent), recording every problem (with its key) in ``problems``."""
    if not table:
        return None
    values = p.read_table(problems, ("deploy",), table, _SPECS)
    if "state_dir" in values:
        p.check_directory(problems, "deploy.state_dir", values["state_dir"])
    else:
        values["state_dir"] = uplink.state_dir if uplink is not None else default_state_dir(host_name)
    config = DeployConfig(**values)
    if config.enabled:
        _check_enabled(problems, config, reported="trusted_keys" in table and "trusted_keys" not in values)
    return config


def _check_enabled(problems: p.Problems, config: DeployConfig, reported: bool) -> None:
    if not config.trusted_keys:
        if not reported:
            problems.add(
                "deploy.trusted_keys",
                "no trusted key; expected the path of at least one fleet public key, e.g. [\"fleet.pub\"] "
                "(sghost deploy keygen writes fleet.pub)",
            )
        return
    try:
        import cryptography  # noqa: F401
    except ImportError:
        problems.add("deploy.enabled", f"true, but {document.INSTALL_HINT}")
        return
    for index, path in enumerate(config.trusted_keys):
        try:
            document.load_public_key(path)
        except document.DocumentError as error:
            problems.add(f"deploy.trusted_keys[{index}]", f"{error}")


def load_trusted_keys(config: DeployConfig) -> list[Any]:
    """The Ed25519 public keys of ``trusted_keys`` (checked when the manifest was loaded)."""
    return [document.load_public_key(path) for path in config.trusted_keys]


def deployments_on(config: HostConfig) -> bool:
    """Whether a HostConfig has ``[deploy] enabled = true``."""
    return config.deploy is not None and bool(config.deploy.enabled)
