"""Which provider places instances, chosen once from the server's settings: the app and the fleets
only ever see the InstanceProvider protocol (moorage/compute/base.py)."""

from __future__ import annotations

from pathlib import Path

from moorage.compute.base import InstanceProvider
from moorage.compute.local import LocalProvider

PROVIDERS = ("local",)


def make_provider(name: str, run_dir: Path) -> InstanceProvider:
    """`run_dir`: a private, short-pathed directory for a local provider's Unix sockets."""
    if name == "local":
        return LocalProvider(run_dir)
    raise ValueError(f"unknown compute provider {name!r}; this server has: {', '.join(PROVIDERS)}")
