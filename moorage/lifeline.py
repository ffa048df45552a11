"""Child processes that never outlive their parent, however the parent ends (SIGKILL included).

Linux's PR_SET_PDEATHSIG delivers a signal to a process when the thread that forked it exits; the
instance processes (children of the front door) and their workers (children of the instance's main
process) both use it, so a crashed server leaves no model running behind it. Elsewhere it is a no-op
apart from the check that the parent is still there.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, signum: signal.Signals) -> None:
    """Ask for `signum` when `parent` dies; exit at once if it already has (before prctl took effect)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
