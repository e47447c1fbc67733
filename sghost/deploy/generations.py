"""Generations: each applied deployment as a numbered directory under ``<state_dir>/generations``.

Layout (plain files, so that an operator can look and a crash leaves nothing half-true)::

    <state_dir>/generations/
        current                 the number of the generation in force (switched atomically)
        status.json             the last deployment state published, and the highest sequence applied
        <N>/manifest.toml       the generation's manifest text
        <N>/deployment.json     the signed document it came from (absent for the first, local one)
        <N>/generation.json     number, sequence, id, when, state, reason, complete
        <N>/requirements.txt    the pip requirement lines
        <N>/site/               its packages, installed by pip in hash-checking mode

A generation is ``complete`` only once its packages are installed; the pointer
is only ever switched to a complete generation, so a half-installed set is never
run. Every file is written to a temporary name, flushed to disk, renamed over
the old one, and the directory flushed too (write, fsync, rename, fsync dir).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENERATIONS_DIR = "generations"
CURRENT_FILE = "current"
STATUS_FILE = "status.json"
META_FILE = "generation.json"
MANIFEST_FILE = "manifest.toml"
DOCUMENT_FILE = "deployment.json"
REQUIREMENTS_FILE = "requirements.txt"
SITE_DIR = "site"

_REQUIREMENT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+"
    r"(\s+--hash=sha(256|384|512):[0-9a-fA-F]+)+\s*"
)


class GenerationError(Exception):
    """A generation cannot be made or read; the text names the file and says why."""


def now_iso() -> str:
    """The time now as ISO 8601, UTC, to the second (``2026-12-04T17:01:42Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def requirement_problems(lines: tuple[str, ...] | list[str]) -> list[str]:
    """Why requirement lines are not each ``NAME==VERSION --hash=sha256:HEX`` (pip options are refused)."""
    problems = []
    for index, line in enumerate(lines):
        if not _REQUIREMENT.fullmatch(line.strip()):
            problems.append(
                f"requirements[{index}]: {line!r} is not a pinned, hashed requirement; "
                "expected NAME==VERSION --hash=sha256:HEX (no pip options)"
            )
    return problems


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content."""
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class Generation:
    """One generation's metadata (``generation.json``) and where it lives."""

    number: int
    sequence: int
    id: str | None
    when: str
    state: str
    reason: str = ""
    complete: bool = False
    packages: bool = False
    """Whether it has requirements (and so a ``site`` directory to put first on ``sys.path``)."""
    path: Path = Path()

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def site(self) -> Path:
        return self.path / SITE_DIR

    def manifest_text(self) -> str:
        return self.manifest_path.read_text(encoding="utf-8")

    def requirements(self) -> list[str]:
        path = self.path / REQUIREMENTS_FILE
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        del values["path"]
        return values


class GenerationStore:
    """The generations under one ``state_dir``; pure file operations, no processes but pip."""

    def __init__(self, state_dir: Path, keep: int = 3) -> None:
        self.root = state_dir / GENERATIONS_DIR
        self.keep = keep

    # ------------------------------------------------------------- reading

    def exists(self) -> bool:
        return (self.root / CURRENT_FILE).exists()

    def generations(self) -> list[Generation]:
        """Every generation on disk, oldest first (unreadable ones are skipped)."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            if entry.name.isdigit() and (entry / META_FILE).is_file():
                generation = self._read(entry)
                if generation is not None:
                    found.append(generation)
        return sorted(found, key=lambda generation: generation.number)

    def get(self, number: int) -> Generation | None:
        directory = self.root / str(number)
        return self._read(directory) if (directory / META_FILE).is_file() else None

    def current_number(self) -> int | None:
        try:
            text = (self.root / CURRENT_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(text) if text.isdigit() else None

    def current(self) -> Generation | None:
        """The generation in force; if the pointer names a missing or incomplete one, the newest complete one."""
        number = self.current_number()
        generation = self.get(number) if number is not None else None
        if generation is not None and generation.complete:
            return generation
        complete = [each for each in self.generations() if each.complete and (number is None or each.number < number)]
        return complete[-1] if complete else None

    def previous(self, before: int) -> Generation | None:
        """The newest complete generation older than ``before`` (where a rollback goes)."""
        older = [each for each in self.generations() if each.complete and each.number < before]
        return older[-1] if older else None

    def _read(self, directory: Path) -> Generation | None:
        try:
            values = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
            return Generation(**values, path=directory)
        except (OSError, ValueError, TypeError):
            return None

    # ------------------------------------------------------------- writing

    def create(
        self, manifest: str, sequence: int, deployment_id: str | None, document_json: str | None,
        requirements: list[str] | tuple[str, ...] = (), state: str = "installing",
    ) -> Generation:
        """A new, not yet complete generation numbered after every existing one."""
        self.root.mkdir(parents=True, exist_ok=True)
        numbers = [generation.number for generation in self.generations()]
        number = max([0, *numbers, self.current_number() or 0]) + 1
        directory = self.root / str(number)
        if directory.exists():
            import shutil  # here, not at the top: the supervisor carries what it imports

            shutil.rmtree(directory)  # a leftover without metadata (crashed before its first write)
        directory.mkdir()
        atomic_write(directory / MANIFEST_FILE, manifest.encode("utf-8"))
        if document_json is not None:
            atomic_write(directory / DOCUMENT_FILE, document_json.encode("utf-8"))
        if requirements:
            atomic_write(directory / REQUIREMENTS_FILE, ("\n".join(requirements) + "\n").encode("utf-8"))
        generation = Generation(
            number=number, sequence=sequence, id=deployment_id, when=now_iso(), state=state,
            packages=bool(requirements), path=directory,
        )
        self._write(generation)
        return generation

    def update(self, generation: Generation, **changes: Any) -> Generation:
        """Write new metadata (``state``, ``reason``, ``complete``) for ``generation``."""
        changed = replace(generation, **changes)
        self._write(changed)
        return changed

    def _write(self, generation: Generation) -> None:
        text = json.dumps(generation.as_dict(), sort_keys=True, indent=1) + "\n"
        atomic_write(generation.path / META_FILE, text.encode("utf-8"))

    def switch(self, generation: Generation) -> None:
        """Make ``generation`` (complete) the one sghost starts from."""
        if not generation.complete:
            raise GenerationError(f"generation {generation.number} is not complete; it cannot be switched to")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / CURRENT_FILE, f"{generation.number}\n".encode("ascii"))

    def remove(self, generation: Generation) -> None:
        import shutil

        shutil.rmtree(generation.path, ignore_errors=True)

    def prune(self) -> list[int]:
        """Remove the oldest generations beyond ``keep`` (never the current one); return their numbers."""
        current = self.current_number()
        generations = self.generations()
        removed = []
        for generation in generations[: max(0, len(generations) - self.keep)]:
            if generation.number != current:
                self.remove(generation)
                removed.append(generation.number)
        return removed

    # -------------------------------------------------------------- status

    def read_status(self) -> dict[str, Any]:
        """``{"last": <the last deployment document published>, "highest_sequence": N}`` (empty when none)."""
        try:
            value = json.loads((self.root / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def write_status(self, last: dict[str, Any], highest_sequence: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"last": last, "highest_sequence": highest_sequence}, sort_keys=True) + "\n"
        atomic_write(self.root / STATUS_FILE, text.encode("utf-8"))


def pip_command(
    generation: Generation, index_url: str | None, find_links: tuple[str, ...], python: str = sys.executable
) -> list[str]:
    """pip, in hash-checking mode, from only the configured index or links, into the generation's ``site``.

    ``--isolated`` ignores pip's environment variables and configuration files,
    so no index the manifest does not name is ever asked; ``--no-deps``: the
    requirements are the full set; ``--only-binary :all:``: nothing is built.
    """
    command = [
        python, "-m", "pip", "install", "--isolated", "--no-input", "--disable-pip-version-check",
        "--require-hashes", "--no-deps", "--only-binary", ":all:", "--no-cache-dir",
        "--target", str(generation.site), "-r", str(generation.path / REQUIREMENTS_FILE),
    ]
    if index_url is None:
        command.append("--no-index")
    else:
        command += ["--index-url", index_url]
    for link in find_links:
        command += ["--find-links", link]
    return command


def start_install(
    generation: Generation, index_url: str | None, find_links: tuple[str, ...]
) -> subprocess.Popen[bytes]:
    """Start pip for ``generation`` (the caller polls it, so that the event loop never waits on pip)."""
    log_path = generation.path / "pip.log"
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            pip_command(generation, index_url, find_links),
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def install_failure(generation: Generation) -> tuple[bool, str]:
    """After pip failed: whether a hash did not match, and pip's last error line (for the reason)."""
    try:
        text = (generation.path / "pip.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    hash_mismatch = "DO NOT MATCH THE HASHES" in text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    detail = errors[-1] if errors else (lines[-1] if lines else "pip said nothing")
    if hash_mismatch:
        mismatched = [line for line in lines if line.startswith("Expected sha") or line.startswith("Got")]
        detail = "a package's hash does not match: " + "; ".join(mismatched[:3] or [detail])
    return hash_mismatch, detail


def recover(store: GenerationStore) -> tuple[list[tuple[Generation, str, str]], Generation | None]:
    """At start: settle what a crash left, before anything runs.

    Returns the deployments to report (generation, final state, reason) and the
    current generation when sghost was stopped while applying or verifying it
    (it runs, and is verified again).
    """
    current = store.current()
    notes = []
    resume = None
    running = f"generation {current.number}" if current is not None else "the manifest given with -c"
    for generation in store.generations():
        if current is not None and generation.number == current.number:
            if generation.state in ("applying", "verifying"):
                resume = generation
            elif generation.state == "rolling-back":  # stopped before the pointer went back: finish the rollback
                previous = store.previous(generation.number)
                if previous is not None:
                    store.switch(previous)
                    reason = f"{generation.reason}; stopped while rolling back: generation {previous.number} runs"
                    store.update(generation, state="rolled-back", reason=reason)
                    notes.append((generation, "rolled-back", reason))
                else:
                    resume = generation
            continue
        if generation.state in ("installing", "applying", "verifying"):
            reason = f"sghost stopped while {generation.state} generation {generation.number}; {running} runs"
            if not generation.complete or current is None or generation.number > current.number:
                store.remove(generation)
            else:
                store.update(generation, state="failed", reason=reason)
            notes.append((generation, "failed", reason))
        elif generation.state == "rolling-back":
            reason = f"sghost stopped while rolling back generation {generation.number}; {running} runs"
            store.update(generation, state="rolled-back", reason=reason)
            notes.append((generation, "rolled-back", reason))
    return notes, resume
