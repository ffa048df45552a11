"""A multi-model endpoint on the Ray provider (`moorage serve --compute ray`), behind two front doors on
one PostgreSQL: two instances as Ray actors on the session's two-node cluster, each prepared with an
empty model directory on its node, load the models their requests name. The front door that does not
reconcile rebuilds the variant's gate from what the other published, so both place every model on the
same instance: models loaded through one are cache hits through the other."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_multimodel import (
    error_of,
    invoke_when_ready,
    metrics,
    model_archive,
    multi_model_endpoint,
)
from tests.support.front_doors import two_front_doors
from tests.support.moorage_server import RunningServer
from tests.support.postgres import PostgresServer
from tests.support.ray_cluster import RayCluster


@pytest.fixture
def front_doors(
    postgres: PostgresServer, ray_nodes: RayCluster, tmp_path: Path
) -> Iterator[tuple[RunningServer, RunningServer]]:
    database = postgres.url(postgres.create_database("mme"))
    with two_front_doors(
        database,
        ray_nodes,
        tmp_path,
        MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS="20",
        MOORAGE_LEADER_RETRY_SECONDS="0.5",
        MOORAGE_ROUTE_SYNC_SECONDS="0.2",
    ) as doors:
        yield doors


def _routable(smr: Any, endpoint: str, target: str, timeout: float = 30) -> dict[str, Any]:
    """Invoke through a front door that may not have the endpoint's route yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invoke_when_ready(smr, endpoint, target)
        except ClientError as err:
            if "not found" not in err.response["Error"]["Message"] or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def test_models_load_where_every_front_door_sends_them_on_ray_instances(
    front_doors: tuple[RunningServer, RunningServer], tmp_path: Path
) -> None:
    first, second = front_doors
    root = tmp_path / "models"
    names = ["one", "two", "three", "four"]
    for name in names:
        model_archive(root / f"{name}.tar.gz", name)
    endpoint = multi_model_endpoint(first.client("sagemaker"), root.as_uri() + "/", instances=2)
    # loaded through the front door that does not reconcile ...
    smr = second.client("sagemaker-runtime")
    for name in names:
        assert _routable(smr, endpoint, f"{name}.tar.gz")["model"] == name
    error = error_of(lambda: smr.invoke_endpoint(EndpointName=endpoint, Body=b"{}"))
    assert "missing a target model header" in error["Message"]  # its own gate, rebuilt from the route
    # ... and found loaded, on the same instances, through the one that does
    smr = first.client("sagemaker-runtime")
    for name in names:
        assert invoke_when_ready(smr, endpoint, f"{name}.tar.gz")["model"] == name
    seen = metrics(first, endpoint)
    assert (
        seen["sagemaker_model_cache_hits_total"] == seen["sagemaker_model_cache_lookups_total"] == len(names)
    )
    assert seen["sagemaker_variant_loaded_model_count"] == len(names)  # each model on one instance only
    log = (first.state_dir / "logs" / f"{endpoint}.log").read_text()
    assert "memory budget 0.25 GiB per instance" in log  # ml.m5.large as the cluster's types size it
    first.client("sagemaker").delete_endpoint(EndpointName=endpoint)
