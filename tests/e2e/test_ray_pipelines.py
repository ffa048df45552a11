"""Multi-container endpoints on the Ray provider (`moorage serve --compute ray`): an instance is one Ray
actor on the session's two-node cluster, reserving its InstanceType once, with every container's
processes started by that actor on its node; a request goes through both containers; and on two front
doors sharing one PostgreSQL, the one that does not reconcile serves them too."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.test_pipelines import PREPROCESS, SCORER, container, create_endpoint
from tests.support.front_doors import two_front_doors
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.postgres import PostgresServer
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster

_HEALTHY = re.compile(r"instance (i-[0-9a-f]+) is healthy on (.*?) \((\d+) workers\)")
# what the cluster says, asked by a driver of its own: the named actors, and the resources left free
_CLUSTER_STATE = """
import json, logging, sys, time
import ray

ray.init(
    address=sys.argv[1], _node_ip_address=sys.argv[2], log_to_driver=False, logging_level=logging.WARNING
)
free = ray.available_resources()
deadline = time.monotonic() + 15
while free.get("CPU", 0.0) == float(sys.argv[3]) and time.monotonic() < deadline:  # the view catches up
    time.sleep(0.2)
    free = ray.available_resources()
names = [entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)]
print(json.dumps({"actors": names, "cpu": free.get("CPU", 0.0), "memory": free.get("memory", 0.0)}))
"""


@pytest.fixture(scope="module")
def ray_server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS="20")
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


def _cluster_state(cluster: RayCluster, cpu_before: float = -1.0) -> dict[str, Any]:
    """The named actors and the free CPU and memory; with `cpu_before`, once the free CPU differs."""
    done = subprocess.run(
        [sys.executable, "-c", _CLUSTER_STATE, cluster.address, HEAD_IP, str(cpu_before)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    assert done.returncode == 0, done.stderr
    state: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return state


def _serving_parents(instance_id: str) -> dict[str, int]:
    """The instance's containers' serving processes (not their forked workers): MOORAGE_INSTANCE_ID of
    each (the container's own id) -> the pid of the process that started it."""
    found: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0") if entry.name.isdigit() else []
            status = (entry / "status").read_text() if environ else ""
        except OSError:
            continue
        ids = [v.decode().split("=", 1)[1] for v in environ if v.startswith(b"MOORAGE_INSTANCE_ID=")]
        if ids and ids[0].startswith(f"{instance_id}-"):
            found[int(entry.name)] = (ids[0], int(re.findall(r"^PPid:\s+(\d+)", status, re.M)[0]))
    return {own: parent for own, parent in found.values() if parent not in found}


def test_a_two_container_pipeline_answers_from_one_ray_actor(
    ray_server: RunningServer, ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("ray-pipeline")
    pre = build_model_tar(root / "pre" / "model.tar.gz", PREPROCESS).as_uri()
    scorer = build_model_tar(root / "scorer" / "model.tar.gz", SCORER).as_uri()
    sm: Any = ray_server.client("sagemaker")
    smr: Any = ray_server.client("sagemaker-runtime")
    before = _cluster_state(ray_nodes)
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
    (instance_id, placement, workers), *_ = _HEALTHY.findall(log)
    assert workers == "2"  # one worker per container
    assert re.fullmatch(rf"Ray node ({re.escape(HEAD_IP)}|{re.escape(SECOND_IP)}) \([0-9a-f]+\)", placement)
    # one actor for the instance, which reserved ml.m5.large (0.5 CPU, 0.25 GiB here) once
    after = _cluster_state(ray_nodes, before["cpu"])
    ours = [actor for actor in after["actors"] if actor.startswith(f"{name}/")]
    assert len(ours) == 1 and ours[0].endswith(f"/{instance_id}"), ours
    assert before["cpu"] - after["cpu"] == pytest.approx(0.5)
    assert before["memory"] - after["memory"] == pytest.approx(0.25 * 1024**3)
    # and that actor's process started both containers' serving processes, on its node
    parents = _serving_parents(instance_id)
    assert sorted(parents) == [f"{instance_id}-c1", f"{instance_id}-c2"]
    assert len(set(parents.values())) == 1
    sm.delete_endpoint(EndpointName=name)


@pytest.fixture
def front_doors(
    postgres: PostgresServer, ray_nodes: RayCluster, tmp_path: Path
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two servers on one database and cluster; the first to start reconciles."""
    database = postgres.url(postgres.create_database("pipelines"))
    with two_front_doors(
        database,
        ray_nodes,
        tmp_path,
        MOORAGE_LEADER_RETRY_SECONDS="0.5",
        MOORAGE_ROUTE_SYNC_SECONDS="0.2",
        MOORAGE_HEALTH_INTERVAL_SECONDS="0.5",
    ) as doors:
        yield doors


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
