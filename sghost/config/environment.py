"""A resource's process environment: ``environment = {KEY = "value"}`` and ``env_file`` (systemd syntax).

The child's environment is the supervisor's plus, in this order (later wins):
``[defaults] env_file``, ``[defaults] environment``, the resource's
``env_file``, the resource's ``environment``.

An env file follows systemd's ``EnvironmentFile=``: one ``KEY=value`` per
line; blank lines and lines starting with ``#`` or ``;`` are ignored; the
value may be in single quotes (taken literally) or double quotes (``\\"``,
``\\\\``, ``\\$`` and ``\\``` are unescaped); an unquoted value ending in ``\\``
continues on the next line; whitespace around key and value is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sghost.config.parsing import Problems, key_path

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
EXPECTED_LINE = "expected KEY=value, a comment (#, ;) or a blank line"
_DOUBLE_QUOTE_ESCAPES = '"\\$`'


class EnvFileError(ValueError):
    """A line of an env file that is not ``KEY=value``; ``line`` is its number (from 1)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class EnvironmentSource:
    """One level's environment as written: an inline table and an env file (either may be missing)."""

    table: dict[str, str]
    env_file: Path | None = None


def parse_table(problems: Problems, keypath: str, value: Any) -> dict[str, str] | None:
    """Parse ``environment = {KEY = "value", ...}``; None (after recording why) when it is not valid."""
    if not isinstance(value, dict):
        problems.wrong_type(keypath, value, 'a table of strings, e.g. { KEY = "value" }')
        return None
    table: dict[str, str] = {}
    valid = True
    for key, item in value.items():
        itempath = f"{keypath}.{key_path(key)}"
        if not NAME.fullmatch(key):
            problems.add(itempath, "not a variable name; expected letters, digits and _ (no digit first)")
            valid = False
        elif not isinstance(item, str):
            problems.wrong_type(itempath, item, "a string (quote numbers)")
            valid = False
        elif "\0" in item:
            problems.add(itempath, "contains a NUL character; expected text without NUL")
            valid = False
        else:
            table[key] = item
    return table if valid else None


def read_env_file(path: Path) -> dict[str, str]:
    """Read an env file; raise OSError when it cannot be read, EnvFileError for a bad line."""
    text = path.read_bytes().decode("utf-8", errors="strict")
    return parse_env_text(text)


def parse_env_text(text: str) -> dict[str, str]:
    """Parse the text of an env file; raise EnvFileError naming the first bad line."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line[0] in "#;":
            continue
        key, equals, raw = line.partition("=")
        key = key.strip()
        if not equals:
            raise EnvFileError(number, f"no '=' in {_shown(line)}; {EXPECTED_LINE}")
        if not NAME.fullmatch(key):
            raise EnvFileError(number, f"{_shown(key)} is not a valid variable name; {EXPECTED_LINE}")
        raw = raw.strip()
        while raw[:1] not in ("'", '"') and raw.endswith("\\") and index < len(lines):
            raw = raw[:-1] + lines[index].strip()
            index += 1
        values[key] = _unquote(raw, number)
    return values


def _unquote(raw: str, number: int) -> str:
    if not raw or raw[0] not in ("'", '"'):
        return raw
    quote = raw[0]
    if len(raw) < 2 or raw[-1] != quote or (quote == '"' and _escaped_end(raw)):
        raise EnvFileError(number, f"unterminated {quote} quote; expected the value to end with {quote}")
    body = raw[1:-1]
    if quote == "'":
        return body
    out: list[str] = []
    position = 0
    while position < len(body):
        char = body[position]
        if char == "\\" and position + 1 < len(body) and body[position + 1] in _DOUBLE_QUOTE_ESCAPES:
            out.append(body[position + 1])
            position += 2
            continue
        out.append(char)
        position += 1
    return "".join(out)


def _escaped_end(raw: str) -> bool:
    """Whether the closing double quote is itself escaped (an odd run of backslashes before it)."""
    run = len(raw) - 1 - len(raw[:-1].rstrip("\\"))
    return run % 2 == 1


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def load_env_file(problems: Problems, keypath: str, path: Path) -> dict[str, str]:
    """The variables of ``path``; {} (after recording a problem naming the file and line) when unusable."""
    try:
        return read_env_file(path)
    except FileNotFoundError:
        problems.add(keypath, f"file not found: {path}; expected a file of KEY=value lines (systemd EnvironmentFile)")
    except IsADirectoryError:
        problems.add(keypath, f"{path} is a directory; expected a file of KEY=value lines")
    except UnicodeDecodeError as error:
        problems.add(keypath, f"{path} is not UTF-8 text (byte {error.start}); expected a UTF-8 text file")
    except OSError as error:
        problems.add(keypath, f"cannot read {path}: {error.strerror}; expected a readable file")
    except EnvFileError as error:
        problems.add(keypath, f"{path} {error}")
    return {}


def merge(problems: Problems, levels: list[tuple[str, EnvironmentSource]]) -> dict[str, str]:
    """The environment of one resource: each level's env file, then its table; later levels win.

    ``levels``: (key path of the level's table, e.g. ``resources.a``, its source), [defaults] first.
    """
    environment: dict[str, str] = {}
    for keypath, source in levels:
        if source.env_file is not None:
            environment.update(load_env_file(problems, f"{keypath}.env_file", source.env_file))
        environment.update(source.table)
    return environment


__all__ = [
    "EnvFileError",
    "EnvironmentSource",
    "load_env_file",
    "merge",
    "parse_env_text",
    "parse_table",
    "read_env_file",
]
