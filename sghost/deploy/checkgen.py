"""``python -m sghost.deploy.checkgen``: check a generation's manifest with the generation's packages.

Plugins are imported once per process, so a manifest that needs new plugin code
is checked in a fresh process with the generation's ``site`` first on
``sys.path``, exactly as ``sghost check`` would check it. Reads one JSON object
(``path``: the manifest sghost was started with, ``text``: the manifest,
``site``: the packages or null) on stdin; writes ``{"problems": "...", "types":
{type: "distribution==version"}}`` (problems empty when the manifest is valid) on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CHECK_TIMEOUT = 120.0


def check_in_subprocess(path: Path, text: str, site: Path | None) -> tuple[str, dict[str, str]]:
    """The problems ``sghost check`` would report for ``text`` at ``path`` with ``site``'s packages ("" if none),
    and which plugin version provides each resource type."""
    request = json.dumps({"path": str(path), "text": text, "site": str(site) if site is not None else None})
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sghost.deploy.checkgen"], input=request, capture_output=True, text=True,
            timeout=CHECK_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot check the manifest with the new packages: {error}", {}
    try:
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        return str(answer["problems"]), dict(answer["types"])
    except (ValueError, IndexError, KeyError, TypeError):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"checking the manifest with the new packages failed: {tail}", {}


def type_versions(registry: Any) -> dict[str, str]:
    """``{type: "distribution==version"}``: what a changed plugin package is recognised by."""
    plugins = {info.name: info for info in registry.plugins}
    versions = {}
    for name, resource_type in registry.types.items():
        info = plugins.get(resource_type.plugin)
        versions[name] = f"{info.distribution or info.name}=={info.version or ''}" if info else ""
    return versions


def main() -> int:
    request = json.loads(sys.stdin.read())
    if request.get("site"):
        sys.path.insert(0, request["site"])
    from sghost.config.checked import load_checked, load_registry
    from sghost.config.manifest import ManifestError

    registry = load_registry()
    try:
        load_checked(request["path"], registry, strict_types=True, text=request["text"])
        problems = ""
    except ManifestError as error:
        problems = str(error)
        failed = [f'plugin "{p.name}" ({p.source}) failed to load: {p.error}' for p in registry.failed]
        problems = "\n".join([problems, *failed])
    print(json.dumps({"problems": problems, "types": type_versions(registry)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
