"""Per-resource log files that belong to the resource's own Unix user.

The supervisor writes ``<log_dir>/<resource>.log`` (it reads the resource's output
pipes). For a resource with a ``user``, the file and every rotated one are owned by
that user and its group, mode 0600: other resources, running as other users, cannot
read what it logged.
"""

from __future__ import annotations

import logging.handlers
import os
from pathlib import Path
from typing import Any

from sghost.config.identities import Account, resolve


class OwnedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files are chowned to ``account`` and chmod 0600 when opened."""

    def __init__(self, filename: Path, account: Account, **kwargs: Any) -> None:
        self.account = account
        super().__init__(filename, **kwargs)

    def _open(self) -> Any:
        stream = super()._open()
        os.fchown(stream.fileno(), self.account.uid, self.account.gid)
        os.fchmod(stream.fileno(), 0o600)
        return stream


def log_handler(path: Path, user: str | None, group: str | None, **kwargs: Any) -> logging.Handler:
    """The handler for one resource's log file: owned by its user when it has one (and sghost is root)."""
    if user is None or os.geteuid() != 0:
        return logging.handlers.RotatingFileHandler(path, **kwargs)
    try:
        account = resolve(user, group)
    except KeyError:  # checked at load; the account went away since
        return logging.handlers.RotatingFileHandler(path, **kwargs)
    return OwnedRotatingFileHandler(path, account, **kwargs)
