"""How model processes relate to the server: they never outlive it, and they go first when memory runs out.

Linux's PR_SET_PDEATHSIG delivers a signal to a process when the thread that forked it exits; the
instance processes (children of the front door) and their workers (children of the instance's main
process) both use it, so a crashed server leaves no model running behind it. Elsewhere it is a no-op
apart from the check that the parent is still there.

An instance makes these calls itself, first thing in its own start-up (the server passes its pid in
``MOORAGE_PARENT_PID``), rather than in a ``preexec_fn`` between fork and exec: the server has threads
(``asyncio.to_thread``), and running Python in a child forked from a threaded process can deadlock.
The parent check covers a server that died before the child got that far.

A model that leaks memory is the likeliest reason for the kernel's out-of-memory killer to act;
raising the instances' `oom_score_adj` (no privilege needed to raise it) makes it pick a model
process, which is then replaced like any crash, rather than the server or another program.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Mapping, Sequence

_PR_SET_PDEATHSIG = 1
PARENT_PID_VARIABLE = "MOORAGE_PARENT_PID"
OOM_SCORE_ADJ = 800  # of -1000..1000; inherited by the workers


def prefer_for_oom_kill() -> None:
    """Make this process (and its future children) the OOM killer's first choice, where Linux allows."""
    try:
        with open("/proc/self/oom_score_adj", "w") as adj:
            adj.write(str(OOM_SCORE_ADJ))
    except OSError:  # not Linux, or no /proc
        pass


def start_model_process(environ: Mapping[str, str]) -> None:
    """Run first in a new instance process started by the server: see the module docstring."""
    parent = environ.get(PARENT_PID_VARIABLE)
    if parent:
        die_with_parent(int(parent), signal.SIGTERM)  # SIGTERM: a clean stop of its workers
    prefer_for_oom_kill()


def die_with_parent(parent: int, signum: signal.Signals) -> None:
    """Ask for `signum` when `parent` dies; exit at once if it already has (before prctl took effect)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


# run by `python -c` (argv: parent pid, "1" to offer itself to the OOM killer first, the command)
_EXEC = (
    "import os, signal, sys; from moorage import lifeline; "
    "lifeline.die_with_parent(int(sys.argv[1]), signal.SIGTERM); "
    "sys.argv[2] == '1' and lifeline.prepare_model(os.environ); os.execvp(sys.argv[3], sys.argv[3:])"
)


def prepare_model(environ: Mapping[str, str]) -> None:
    """For a model's own program (an image's server): the OOM killer's first choice, and capped at a
    serverless variant's MemorySizeInMB (RLIMIT_DATA survives the exec, as moorage.serving applies it
    to its own processes)."""
    from moorage.serving.memory import apply_limit

    prefer_for_oom_kill()
    apply_limit(environ)


def lifeline_argv(command: Sequence[str], *, oom_first: bool) -> list[str]:
    """An argv that becomes `command` (searched on PATH) tied to this process's life, for programs
    that cannot make the calls above themselves (an image's own server, the embedded S3 store): a
    small Python prelude makes them, and PR_SET_PDEATHSIG survives the exec into `command`."""
    return [sys.executable, "-c", _EXEC, str(os.getpid()), "1" if oom_first else "0", *command]
