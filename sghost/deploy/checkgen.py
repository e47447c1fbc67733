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

TYPES_FILE = "types.json"
"""Beside a generation's ``site``: which plugin version provides each type there (written after its check)."""


class CheckProcess:
    """The check running in its own process; the caller polls it, so that its event loop never waits."""

    def __init__(self, path: Path, text: str, site: Path) -> None:
        import tempfile  # here, not at the top: the supervisor (which imports this module) carries what it imports

        request = json.dumps({"path": str(path), "text": text, "site": str(site)})
        self._input = tempfile.TemporaryFile()  # noqa: SIM115 - closed by result()
        self._input.write(request.encode("utf-8"))
        self._input.seek(0)
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - closed by result()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sghost.deploy.checkgen"], stdin=self._input, stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    def poll(self) -> int | None:
        return self.process.poll()

    def result(self) -> tuple[str, dict[str, str]]:
        """The problems (``""``: valid) and ``{type: "distribution==version"}``, once ``poll()`` is not None."""
        self._output.seek(0)
        lines = self._output.read().decode("utf-8", errors="replace").strip().splitlines()
        self._input.close()
        self._output.close()
        try:
            answer = json.loads(lines[-1])
            return str(answer["problems"]), dict(answer["types"])
        except (ValueError, IndexError, KeyError, TypeError):
            tail = lines[-1] if lines else "no output"
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
