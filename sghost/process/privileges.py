"""Dropping a resource process to its own Unix user, for good, before its plugin runs.

Called in the forked child, before the plugin's ``setup``. In this order, as
the standard advice goes (a group change after the user change would fail):

1. ``initgroups``: the user's supplementary groups (plus the chosen group), so none
   of root's groups stays;
2. ``setresgid`` then ``setresuid`` with real, effective and saved ids alike, so there
   is no saved root id to go back to; a ``setuid(0)`` that still works is an error;
3. ``prctl(PR_SET_NO_NEW_PRIVS)``: no set-user-id program or file capability can
   give the process more rights later;
4. the parent-death signal again, since the kernel clears it when the credentials change;
5. ``HOME``, ``USER`` and ``LOGNAME`` of the user, so a plugin does not write into root's home.
"""

from __future__ import annotations

import os
import pwd
import signal

from sghost.config.identities import resolve
from sghost.process import oslevel

_PR_SET_NO_NEW_PRIVS = 38


class PrivilegeError(Exception):
    """The process could not become its user; the text says why."""


def drop_privileges(user: str | None, group: str | None = None) -> None:
    """Become ``user`` (and ``group``) for good; nothing to do without a user or when it is root."""
    if user is None:
        return
    try:
        account = resolve(user, group)
    except KeyError as error:
        raise PrivilegeError(f"cannot run as user {user!r}: {error.args[0]}") from None
    if account.uid == 0:
        return  # user = "root": nothing to drop
    if os.geteuid() != 0:
        raise PrivilegeError(f"cannot run as user {user!r}: sghost does not run as root (uid {os.geteuid()})")
    parent = os.getppid()
    try:
        os.initgroups(user, account.gid)
        os.setresgid(account.gid, account.gid, account.gid)
        os.setresuid(account.uid, account.uid, account.uid)
    except OSError as error:
        raise PrivilegeError(f"cannot run as user {user!r}: {error.strerror}") from None
    _refuse_way_back(user)
    _set_no_new_privileges(user)
    oslevel.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the zygote died before the signal was set again
        os._exit(1)
    home = pwd.getpwuid(account.uid).pw_dir
    os.environ.update(HOME=home, USER=user, LOGNAME=user)


def _refuse_way_back(user: str) -> None:
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise PrivilegeError(f"dropped to user {user!r} but could become root again; refusing to run")


def _set_no_new_privileges(user: str) -> None:
    import ctypes.util  # here, not at the top: only a resource process dropping privileges needs it

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"running as {user!r}, but PR_SET_NO_NEW_PRIVS failed: {os.strerror(ctypes.get_errno())}")
