"""An ``argparse`` parser whose help formatter finds the terminal width without ``shutil``.

argparse's ``HelpFormatter`` imports ``shutil`` (with ``bz2`` and ``lzma``, about
0.8 MiB) for ``shutil.get_terminal_size()`` every time a parser is built, so
``sghost start`` would carry it for the supervisor's whole life.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

FALLBACK_COLUMNS = 80


def terminal_columns() -> int:
    """``$COLUMNS``, else the width of the terminal on stdout, else 80 (as ``shutil.get_terminal_size``)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or FALLBACK_COLUMNS  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return FALLBACK_COLUMNS


class HelpFormatter(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter`; its sub-command parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
