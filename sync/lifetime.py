"""A run started by the scheduler ends when the scheduler does, however the scheduler ends.

`dualline scheduler` runs each sync as a child process and is what enforces the run's timeout.
When the scheduler is stopped it kills its children itself (sync.scheduler); when it is killed
outright — `kill -9`, the OOM killer, a supervisor that signals the main process only — it
cannot, and a child left running would hold its source's run lock with no timeout over it,
writing its report into a pipe nobody reads, while a restarted scheduler skips the source as
locked. So the scheduler names itself in the child's environment (`PARENT_ENV`) and the child
asks Linux to SIGKILL it when that parent dies (prctl PR_SET_PDEATHSIG): its one transaction
never commits, its lock's holder is a dead process, and the next run takes the lock over
(sync.locks) and does the whole run again.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

PARENT_ENV = "DUALLINE_PARENT_PID"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child that must not outlive this process."""
    return {**env, PARENT_ENV: str(os.getpid())}


def die_with_parent() -> None:
    """If a parent named itself in `PARENT_ENV`, be killed when it dies (Linux); if it is already
    gone, die now. Elsewhere, or without the variable, nothing happens."""
    expected = os.environ.pop(PARENT_ENV, "")  # not inherited by what this process starts
    if not expected.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot tie this run to its scheduler's life (%s); it will finish on its own", exc)
        return
    if os.getppid() != int(expected):
        # The parent died between starting us and the prctl: what it would have done to us.
        os.kill(os.getpid(), signal.SIGKILL)
