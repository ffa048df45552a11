"""Two moorage servers (front doors) on one PostgreSQL database and one Ray cluster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import RayCluster


@contextmanager
def two_front_doors(
    database: str, ray_nodes: RayCluster, state: Path, **settings: str
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Both servers, the first started first (so it is the one that reconciles); `settings`: MOORAGE_*
    variables both run with. Their state directories are `state`/a and `state`/b."""
    env = ray_nodes.server_env(**settings)
    with ExitStack() as servers:
        first, second = (
            servers.enter_context(
                moorage_server(state / name, env=env, args=ray_nodes.server_args(), database_url=database)
            )
            for name in ("a", "b")
        )
        yield first, second
