"""A deployment's ``requirements``: pip requirement lines that pin each distribution by version and hash.

The gateway installs them with pip in hash-checking mode, which refuses a line
without a hash, so a file that would fail there is refused when it is signed:
every line must read ``name==version --hash=sha256:<64 hex digits>`` (more
``--hash=`` options may follow). Comments, blank lines and ``\\`` continuations
(as ``pip-compile --generate-hashes`` writes them) are accepted; pip options such
as ``--index-url`` or ``-r`` are not, since the gateway's ``[deploy]`` table alone
says where packages come from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

HASH_ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
"""The hash algorithms pip accepts, by the number of hex digits of a digest."""

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_PIN = re.compile(rf"(?P<name>{_NAME})(?P<extras>\[[A-Za-z0-9._,\s-]*\])?==(?P<version>[A-Za-z0-9.+!_-]+)")
_HASH = re.compile(r"--hash=(?P<algorithm>[a-z0-9]+):(?P<digest>[0-9a-fA-F]+)")
EXPECTED = "expected 'name==version --hash=sha256:<64 hex digits>'"


class RequirementsError(ValueError):
    """A requirements file that cannot be deployed; the text names the file and line."""


def read_requirements(path: Path) -> list[str]:
    """The requirement lines of ``path``, each checked and on one line; raises RequirementsError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RequirementsError(f"{path}: cannot read the requirements file: {error.strerror}") from None
    except UnicodeDecodeError:
        raise RequirementsError(f"{path}: not UTF-8 text; expected pip requirement lines") from None
    return parse_requirements(text, str(path))


def parse_requirements(text: str, source: str = "<requirements>") -> list[str]:
    """Check each logical line of ``text`` (``source`` names it in errors); return them normalised.

    A returned line holds the pin and its hashes separated by single spaces.
    Raises RequirementsError for the first bad line, or a distribution pinned twice.
    """
    lines: list[str] = []
    seen: dict[str, int] = {}
    for number, line in _logical_lines(text):
        where = f"{source}:{number}"
        requirement, name = check_requirement(line, where)
        key = canonical_name(name)
        if key in seen:
            raise RequirementsError(f"{where}: {name!r} is already pinned on line {seen[key]}; expected one line each")
        seen[key] = number
        lines.append(requirement)
    return lines


def check_requirement(line: str, where: str) -> tuple[str, str]:
    """One requirement line -> (normalised line, distribution name); RequirementsError names ``where``."""
    tokens = line.split()
    if tokens[0].startswith("-"):
        raise RequirementsError(
            f"{where}: pip option {tokens[0]!r} is not allowed; {EXPECTED} "
            "(the gateway's [deploy] index_url or find_links say where packages come from)"
        )
    pin = _PIN.fullmatch(tokens[0])
    if pin is None:
        raise RequirementsError(f"{where}: {tokens[0]!r} does not pin one version; {EXPECTED}")
    hashes = tokens[1:]
    for token in hashes:
        _check_hash(token, where)
    if not any(token.startswith("--hash=sha256:") for token in hashes):
        raise RequirementsError(f"{where}: {tokens[0]!r} has no --hash=sha256:...; {EXPECTED}")
    return " ".join(tokens), pin.group("name")


def canonical_name(name: str) -> str:
    """A distribution name as pip compares it (PEP 503: case and runs of ``-_.`` do not matter)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _check_hash(token: str, where: str) -> None:
    match = _HASH.fullmatch(token)
    if match is None:
        raise RequirementsError(f"{where}: {token!r} is not a hash option; {EXPECTED}")
    algorithm, digest = match.group("algorithm"), match.group("digest")
    length = HASH_ALGORITHMS.get(algorithm)
    if length is None:
        raise RequirementsError(
            f"{where}: unknown hash algorithm {algorithm!r}; expected one of {', '.join(HASH_ALGORITHMS)}"
        )
    if len(digest) != length:
        raise RequirementsError(f"{where}: a {algorithm} digest has {length} hex digits, not {len(digest)}; {EXPECTED}")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of the first physical line, text) of each non-empty line, comments dropped, continuations joined."""
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _without_comment(raw).rstrip()
        if not pending:
            first = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(part.strip() for part in pending).strip()
        pending = []
        if joined:
            yield first, joined
    joined = " ".join(part.strip() for part in pending).strip()
    if joined:
        yield first, joined


def _without_comment(line: str) -> str:
    """The line without a ``#`` comment (at its start or after whitespace, as pip reads them)."""
    match = re.search(r"(^|\s)#", line)
    return line[: match.start()] if match else line
