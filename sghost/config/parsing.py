"""The manifest's parsing toolkit: the problem collector, the value parsers, and the file checks.

Every table module of ``sghost.config`` (the manifest's own tables,
``[uplink]``, the integrations, the environment) reports through one
:class:`Problems`, so every problem reads the same way::

    <file>: <key path>: <what is wrong>; expected <what is expected>

A parser takes ``(problems, keypath, value)`` and returns the parsed value, or
:data:`BAD` after it recorded why the value is wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from sgframework import constants
from sgframework.topics import validate_name
from sghost.suggest import did_you_mean

CERTIFICATE_FILES = (constants.CA_CERTS, constants.CERTFILE, constants.KEYFILE)
"""The files a ``certificate_directory`` must hold."""
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The broker hosts allowed with ``embedded = true`` (the embedded broker listens on loopback only)."""

# ---------------------------------------------------------------------------
# Problem collection and value parsers

BAD: Any = object()
"""Returned by a parser for an invalid value, after it recorded the problem."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_path(*parts: str) -> str:
    """Return a TOML key path, quoting the parts that are not bare keys."""
    return ".".join(part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False) for part in parts)


def show(value: Any) -> str:
    """Return a value as TOML would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def describe(value: Any) -> str:
    """Return a value and its TOML type, for 'got ...' messages."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    kinds = {bool: "a boolean", str: "a string", int: "an integer", float: "a float"}
    kind = kinds.get(type(value), "a date/time")
    return f"{show(value)} ({kind})"


class Problems:
    """Collects problem lines for one manifest file."""

    def __init__(self, shown: str, base: Path) -> None:
        self.shown = shown
        self.base = base
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def add(self, keypath: str, message: str) -> Any:
        """Record ``<file>: <keypath>: <message>`` and return the invalid-value sentinel."""
        self.lines.append(f"{self.shown}: {keypath}: {message}")
        return BAD

    def warn(self, keypath: str, message: str) -> None:
        """Record a warning line."""
        self.warnings.append(f"{self.shown}: {keypath}: {message}")

    def wrong_type(self, keypath: str, value: Any, expected: str) -> Any:
        """Record a value of the wrong TOML type."""
        return self.add(keypath, f"got {describe(value)}; expected {expected}")

    def unknown_key(self, keypath: str, key: str, allowed: Collection[str], hint: str = "") -> None:
        """Record an unknown key, suggesting the closest allowed one."""
        suggestion = did_you_mean(key, allowed)
        if suggestion:
            self.add(keypath, f"unknown key; {suggestion}")
        else:
            self.add(keypath, f"unknown key; expected one of: {', '.join(allowed)}{hint}")


Parser = Callable[[Problems, str, Any], Any]


def is_number(value: Any) -> bool:
    """Return True for a TOML integer or float (a boolean is neither)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(lower: float, *, strict: bool) -> Parser:
    """Parse a finite number (int or float) that is > ``lower`` (strict) or >= it."""
    expected = f"a number {'>' if strict else '>='} {lower:g}"

    def parse(problems: Problems, keypath: str, value: Any) -> Any:
        if not is_number(value):
            return problems.wrong_type(keypath, value, expected)
        if not math.isfinite(value):
            return problems.add(keypath, f"{show(value)} is not a finite number; expected {expected}")
        if value < lower or (strict and value == lower):
            return problems.add(keypath, f"{show(value)} is out of range; expected {expected}")
        return float(value)

    return parse


def integer(lower: int, upper: int | None = None) -> Parser:
    """Parse an integer in ``lower..upper`` (inclusive; no upper bound when None)."""
    expected = f"an integer >= {lower}" if upper is None else f"an integer from {lower} to {upper}"

    def parse(problems: Problems, keypath: str, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return problems.wrong_type(keypath, value, expected)
        if value < lower or (upper is not None and value > upper):
            return problems.add(keypath, f"{value} is out of range; expected {expected}")
        return value

    return parse


def boolean(problems: Problems, keypath: str, value: Any) -> Any:
    """Parse true or false."""
    if not isinstance(value, bool):
        return problems.wrong_type(keypath, value, "true or false")
    return value


def string(problems: Problems, keypath: str, value: Any) -> Any:
    """Parse a non-empty string."""
    if not isinstance(value, str):
        return problems.wrong_type(keypath, value, "a string")
    if not value:
        return problems.add(keypath, "empty string; expected a non-empty string")
    return value


def choice(what: str, options: tuple[str, ...]) -> Parser:
    """Parse one of ``options``; ``what`` names the kind of value in messages."""
    expected = "one of " + ", ".join(f'"{option}"' for option in options)

    def parse(problems: Problems, keypath: str, value: Any) -> Any:
        if not isinstance(value, str):
            return problems.wrong_type(keypath, value, f"a string, {expected}")
        if value not in options:
            suggestion = did_you_mean(value, options)
            tail = f"; {suggestion}" if suggestion else ""
            return problems.add(keypath, f"{show(value)} is not {what}; expected {expected}{tail}")
        return value

    return parse


def file_path(problems: Problems, keypath: str, value: Any) -> Any:
    """Parse a path, relative to the manifest's directory unless absolute (``~`` expands)."""
    if not isinstance(value, str):
        return problems.wrong_type(keypath, value, "a string (a path)")
    if not value:
        return problems.add(keypath, "empty path; expected a path to a file or directory")
    return problems.base / Path(value).expanduser()


def name_problem(name: str, what: str) -> str | None:
    """Return why ``name`` is not a valid MQTT name, or None if it is one."""
    try:
        validate_name(name, what)
    except ValueError:
        if not name:
            return f"empty {what}; expected a non-empty MQTT name"
        bad = " and ".join(repr(char) for char in constants.FORBIDDEN_NAME_CHARACTERS if char in name)
        return f"invalid {what} {show(name)}: contains {bad}; expected an MQTT name without '/', '+', '#' or NUL"
    return None


def mqtt_name(problems: Problems, keypath: str, value: Any) -> Any:
    """Parse a string that can be one level of an MQTT topic."""
    if not isinstance(value, str):
        return problems.wrong_type(keypath, value, "a string (an MQTT name)")
    reason = name_problem(value, "name")
    return value if reason is None else problems.add(keypath, reason)


def read_table(
    problems: Problems, parts: tuple[str, ...], table: Mapping[str, Any], specs: Mapping[str, Parser], hint: str = ""
) -> dict[str, Any]:
    """Parse every key of ``table`` with its parser; return the valid values by key."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        keypath = key_path(*parts, key)
        parser = specs.get(key)
        if parser is None:
            problems.unknown_key(keypath, key, list(specs), hint)
            continue
        parsed = parser(problems, keypath, value)
        if parsed is not BAD:
            values[key] = parsed
    return values


def as_table(problems: Problems, parts: tuple[str, ...], value: Any) -> dict[str, Any] | None:
    """Return ``value`` if it is a table, else record a problem and return None."""
    if isinstance(value, dict):
        return value
    header = key_path(*parts)
    problems.wrong_type(header, value, f"a table ([{header}])")
    return None


# ---------------------------------------------------------------------------
# File checks


def check_certificate_directory(problems: Problems, keypath: str, directory: Path) -> None:
    """Record a problem unless ``directory`` holds the three certificate files."""
    expected = "expected a directory holding " + ", ".join(CERTIFICATE_FILES)
    if not os.access(directory, os.X_OK) and os.path.isdir(directory):
        problems.add(keypath, f"cannot enter {directory}: permission denied; expected a directory this user can read "
                     "(run sghost check as the user sghost runs as)")
    elif not directory.exists():
        problems.add(keypath, f"directory not found: {directory}; {expected}")
    elif not directory.is_dir():
        problems.add(keypath, f"{directory} is not a directory; {expected}")
    else:
        for name in CERTIFICATE_FILES:
            if not (directory / name).is_file():
                problems.add(keypath, f"missing file {directory / name}; {expected}")


def check_credential_files(
    command: str, certificate_directory: Path | None, password_file: Path | None
) -> list[str]:
    """Problems with credential files named on ``command``'s command line, as the manifest's would be reported.

    Each line reads ``<command>: --certificate-directory: ...`` or ``<command>: --password-file: ...``.
    """
    problems = Problems(command, Path.cwd())
    if certificate_directory is not None:
        check_certificate_directory(problems, "--certificate-directory", certificate_directory)
    if password_file is not None:
        check_password_file(problems, "--password-file", password_file)
    return problems.lines


def check_password_file(problems: Problems, keypath: str, path: Path, holding: str = "the broker password") -> None:
    """Record a problem unless ``path`` is a file that only its owner can read or write (holding a secret)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        problems.add(keypath, f"file not found: {path}; expected a file holding {holding}")
        return
    except OSError as error:
        problems.add(keypath, f"cannot access {path}: {error.strerror}; expected a readable file")
        return
    if not stat.S_ISREG(mode):
        problems.add(keypath, f"{path} is not a regular file; expected a file holding {holding}")
    elif mode & 0o077:
        problems.add(
            keypath,
            f"{path} is readable or writable by group or others (mode {stat.S_IMODE(mode):04o}); "
            f"expected mode 0600: run chmod 600 {path}",
        )
    elif not os.access(path, os.R_OK):
        problems.add(keypath, f"cannot read {path}: permission denied; expected a file this user can read")


def check_directory(problems: Problems, keypath: str, path: Path) -> None:
    """Record a problem if ``path`` exists but is not a directory (a missing one is created later)."""
    if path.exists() and not path.is_dir():
        problems.add(keypath, f"{path} is not a directory; expected a directory (created if missing)")
