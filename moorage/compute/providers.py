"""Which provider places instances, chosen once from the server's settings: the app and the fleets
only ever see the InstanceProvider protocol (moorage/compute/base.py)."""

from __future__ import annotations

from pathlib import Path

from moorage.compute.base import InstanceProvider
from moorage.compute.instance_types import load_instance_types
from moorage.compute.local import LocalProvider
from moorage.config import Settings

PROVIDERS = ("local", "ray")


def make_provider(settings: Settings, run_dir: Path, installation: str) -> InstanceProvider:
    """`run_dir`: a private, short-pathed directory for a local provider's Unix sockets; `installation`:
    the database's id, which keeps what this installation leaves on a shared cluster its own."""
    if settings.compute == "local":
        return LocalProvider(run_dir)
    if settings.compute == "ray":
        from moorage.compute.ray_provider import RayProvider, RaySettings

        return RayProvider(
            RaySettings(
                address=settings.ray_address,
                node_address=settings.ray_node_address,
                cache_dir=(settings.ray_cache_dir or settings.cache_dir).absolute(),
                placement_timeout=settings.ray_placement_timeout_seconds,
                namespace=f"moorage-{installation[:12]}",
                connect_timeout=settings.ray_connect_timeout_seconds,
                instance_types=load_instance_types(),
            )
        )
    raise ValueError(
        f"unknown compute provider {settings.compute!r}; this server has: {', '.join(PROVIDERS)}"
    )
