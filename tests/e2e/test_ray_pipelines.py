"""Multi-container endpoints on the Ray provider (`moorage serve --compute ray`): each container of an
instance is a Ray actor of its own on the session's two-node cluster, and a request goes through both;
and on two front doors sharing one PostgreSQL, the one that does not reconcile serves them too."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_front_doors import _server as front_door
from tests.e2e.test_pipelines import PREPROCESS, SCORER, container, create_endpoint
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.postgres import PostgresServer
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster

_HEALTHY = re.compile(r"instance i-[0-9a-f]+ is healthy on (.*?) \((\d+) workers\)")


@pytest.fixture(scope="module")
def ray_server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS="20")
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


def test_a_two_container_pipeline_answers_from_ray_actors(
    ray_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("ray-pipeline")
    pre = build_model_tar(root / "pre" / "model.tar.gz", PREPROCESS).as_uri()
    scorer = build_model_tar(root / "scorer" / "model.tar.gz", SCORER).as_uri()
    sm: Any = ray_server.client("sagemaker")
    smr: Any = ray_server.client("sagemaker-runtime")
    name = create_endpoint(sm, [container(pre, "pre"), container(scorer, "scorer")])

    response = smr.invoke_endpoint(
        EndpointName=name, Body=b"1,2,3", ContentType="text/csv", Accept="text/csv"
    )
    assert response["ContentType"] == "text/csv" and response["Body"].read() == b"12.0"
    answer = json.loads(
        smr.invoke_endpoint(EndpointName=name, Body=b"4", ContentType="text/csv", Accept="application/json")[
            "Body"
        ].read()
    )
    assert answer["score"] == 8.0 and answer["accept_at_scorer"] == "application/json"

    log = (ray_server.state_dir / "logs" / f"{name}.log").read_text()
    (placement, workers), *_ = _HEALTHY.findall(log)
    assert workers == "2"  # one worker per container, both on the cluster
    assert f"Ray node {HEAD_IP}" in placement or f"Ray node {SECOND_IP}" in placement
    sm.delete_endpoint(EndpointName=name)


@pytest.fixture
def front_doors(
    postgres: PostgresServer, ray_nodes: RayCluster, tmp_path: Path
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two servers on one database and cluster; the first to start reconciles."""
    database = postgres.url(postgres.create_database("pipelines"))
    with ExitStack() as servers:
        first = servers.enter_context(front_door(tmp_path / "a", database, ray_nodes))
        yield first, servers.enter_context(front_door(tmp_path / "b", database, ray_nodes))


def test_the_front_door_that_does_not_reconcile_runs_pipelines_and_direct_calls(
    front_doors: tuple[RunningServer, RunningServer], tmp_path: Path
) -> None:
    """The gates are published with the route (route_sync): the other server chains the hops and picks
    the container itself, and refuses what the reconciling one refuses."""
    first, second = front_doors
    pre = build_model_tar(tmp_path / "pre" / "model.tar.gz", PREPROCESS).as_uri()
    scorer = build_model_tar(tmp_path / "scorer" / "model.tar.gz", SCORER).as_uri()
    sm: Any = first.client("sagemaker")
    serial = create_endpoint(sm, [container(pre, "pre"), container(scorer, "scorer")])
    direct = create_endpoint(sm, [container(pre, "pre"), container(scorer, "scorer")], mode="Direct")
    smr: Any = second.client("sagemaker-runtime")

    answer = _until_routable(
        lambda: smr.invoke_endpoint(EndpointName=serial, Body=b"2", ContentType="text/csv", Accept="text/csv")
    )
    assert answer["Body"].read() == b"4.0"
    answer = _until_routable(
        lambda: smr.invoke_endpoint(
            EndpointName=direct, Body=b"2,5", ContentType="text/csv", TargetContainerHostname="pre"
        )
    )
    assert json.loads(answer["Body"].read())["features"] == [4.0, 10.0]
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint(EndpointName=direct, Body=b"2", ContentType="text/csv")
    assert "set TargetContainerHostname to one of: pre, scorer." in raised.value.response["Error"]["Message"]
    for name in (serial, direct):
        sm.delete_endpoint(EndpointName=name)


def _until_routable(call: Callable[[], Any], timeout: float = 20) -> Any:
    """The call, retried while the endpoint is not yet routable on this server."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ClientError as exc:
            if "not found" not in exc.response["Error"]["Message"] or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
