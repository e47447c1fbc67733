"""Small Linux process helpers: parent-death signal, signal names, exit status text."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux only)."""
    global _libc
    import ctypes.util  # here, not at the top: the supervisor never calls this (ctypes is 0.7 MiB)

    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return _libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(status: int) -> str:
    """Describe an exit status as reported by the zygote: >= 0 exit code, < 0 minus the signal."""
    if status < 0:
        return f"killed by {signal_name(-status)}"
    return f"exit code {status}"


def status_from_wait(wait_status: int) -> int:
    """Turn an ``os.waitpid`` status into an exit code, or minus the signal number."""
    if os.WIFSIGNALED(wait_status):
        return -os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


def kill_group(pid: int, signum: int) -> bool:
    """Send ``signum`` to the process group led by ``pid``; return False if it is gone."""
    try:
        os.killpg(pid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the kernel (glibc's ``malloc_trim``); False where there is none.

    glibc keeps what ``free`` returned inside its heap, resident, unless it lies at the top.
    """
    import ctypes  # here: only the supervisor calls this, once (ctypes.util would add 0.5 MiB more)

    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return False
