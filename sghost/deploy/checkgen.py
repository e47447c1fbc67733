"""``python -m sghost.deploy.checkgen``: check a generation's manifest with the generation's packages.

Plugins are imported once per process, so a manifest that needs new plugin code
is checked in a fresh process with the generation's ``site`` first on
``sys.path``, exactly as ``sghost check`` would check it. Reads one JSON object
(``path``: the manifest sghost was started with, ``text``: the manifest,
``site``: the packages or null) on stdin; writes ``{"problems": "..."}`` (empty
when the manifest is valid) on stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECK_TIMEOUT = 120.0


def check_in_subprocess(path: Path, text: str, site: Path | None) -> str:
    """The problems ``sghost check`` would report for ``text`` at ``path`` with ``site``'s packages ("" if none)."""
    request = json.dumps({"path": str(path), "text": text, "site": str(site) if site is not None else None})
    try:
        result = subprocess.run(
            [sys.executable, "-m", "sghost.deploy.checkgen"], input=request, capture_output=True, text=True,
            timeout=CHECK_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot check the manifest with the new packages: {error}"
    try:
        return str(json.loads(result.stdout.strip().splitlines()[-1])["problems"])
    except (ValueError, IndexError, KeyError):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"checking the manifest with the new packages failed: {tail}"


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
    print(json.dumps({"problems": problems}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
