"""The SageMaker Python SDK's endpoint wait, shortened for tests; nothing else of the SDK changes.

`Session.wait_for_endpoint` (what `deploy(wait=True)` calls) sleeps its poll interval, 30 s by default,
before every DescribeEndpoint, the first one included, so each deploy takes at least 30 s even where the
endpoint is up in a second or two. `short_endpoint_poll` gives it a default of POLL_SECONDS instead (a
caller's own ``poll=`` still wins).

Run as a script, ``python sdk_poll.py SCRIPT [ARG ...]`` shortens it on the Session class, then runs
SCRIPT unchanged the way ``python SCRIPT [ARG ...]`` would: as ``__main__``, with SCRIPT as ``argv[0]``
and its folder first on ``sys.path``. This file imports nothing from the tests, so it runs by its path.
"""

from __future__ import annotations

import functools
import runpy
import sys
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.5


def short_endpoint_poll(session_class: type) -> Any:
    """``session_class.wait_for_endpoint`` with a POLL_SECONDS default poll, to set on the class."""
    return functools.partialmethod(session_class.wait_for_endpoint, poll=POLL_SECONDS)  # type: ignore[attr-defined]


def run_script(argv: list[str]) -> None:
    """Run ``argv[0]`` as ``python`` would, with the SDK's endpoint wait shortened."""
    if not argv:
        raise SystemExit("usage: python sdk_poll.py SCRIPT [ARG ...]: name the script to run")
    from sagemaker.session import Session

    Session.wait_for_endpoint = short_endpoint_poll(Session)  # type: ignore[method-assign]
    script = argv[0]
    sys.argv = list(argv)
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    run_script(sys.argv[1:])
