"""Logging to stderr (the endpoint's log file) with a prefix naming the instance and the process."""

from __future__ import annotations

import logging
import sys
import time


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a forked worker re-labels it instead of adding one."""


def configure(role: str, instance_id: str | None, level: int) -> None:
    """`role` is "main" or "w<index>"; user code logging through the root logger gets the same prefix."""
    label = (f"{instance_id} {role}" if instance_id else role).replace("%", "%%")
    # UTC stamps like the server's own lines in the same file (moorage/logs.py)
    formatter = logging.Formatter(
        f"%(asctime)s.%(msecs)03dZ %(levelname)s [{label}] %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        handler = _Handler(sys.stderr)
        root.addHandler(handler)
    handler.setFormatter(formatter)
    root.setLevel(level)
