"""Two servers (front doors) sharing one PostgreSQL and one Ray cluster, driven by unchanged boto3.

Either takes any API call and any invocation; one reconciles at a time (the first to start), and when
it dies the other takes over, adopts the instances still running on the cluster (the same processes
keep answering) and finishes the update the first one had started."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FAST_WAIT, deploy, model_and_config, settled
from tests.support.front_doors import two_front_doors
from tests.support.models import ECHO_INFERENCE, build_model_tar
from tests.support.moorage_server import RunningServer
from tests.support.postgres import PostgresServer
from tests.support.ray_cluster import RayCluster

SLOW_LOADING = ECHO_INFERENCE.replace(
    "def model_fn(model_dir):\n", "def model_fn(model_dir):\n    time.sleep(6)\n"
)


@pytest.fixture
def front_doors(
    postgres: PostgresServer, ray_nodes: RayCluster, tmp_path: Path
) -> Iterator[tuple[RunningServer, RunningServer]]:
    database = postgres.url(postgres.create_database("doors"))
    with two_front_doors(
        database,
        ray_nodes,
        tmp_path,
        MOORAGE_LEADER_RETRY_SECONDS="0.5",
        MOORAGE_ROUTE_SYNC_SECONDS="0.2",
        MOORAGE_HEALTH_INTERVAL_SECONDS="0.5",
    ) as doors:
        yield doors


def _invoke(server: RunningServer, name: str, timeout: float = 0) -> dict[str, Any]:
    """One invocation; with `timeout`, retried until the endpoint is routable on this server."""
    smr = server.client("sagemaker-runtime")
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = smr.invoke_endpoint(EndpointName=name, Body=b'{"x": 1}', ContentType="application/json")
            return dict(json.loads(reply["Body"].read()))
        except smr.exceptions.ValidationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_either_front_door_takes_any_call(
    front_doors: tuple[RunningServer, RunningServer], echo_model: str
) -> None:
    first, second = front_doors
    # created through the one that does not reconcile: the other one deploys it
    name = deploy(second.client("sagemaker"), echo_model)
    assert _invoke(first, name, timeout=10)["echo"] == {"x": 1}
    assert _invoke(second, name, timeout=10)["echo"] == {"x": 1}
    # both answer the API the same way (the one that does not reconcile, from what the other published)
    described = [s.client("sagemaker").describe_endpoint(EndpointName=name) for s in front_doors]
    for answer in described:
        answer.pop("ResponseMetadata")
    assert described[0] == described[1]
    assert described[0]["EndpointStatus"] == "InService"
    assert described[0]["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    names = [
        {e["EndpointName"] for e in s.client("sagemaker").list_endpoints()["Endpoints"]} for s in front_doors
    ]
    assert names[0] == names[1] and name in names[0]
    first.client("sagemaker").delete_endpoint(EndpointName=name)
    deadline = time.monotonic() + 30
    while name in {e["EndpointName"] for e in second.client("sagemaker").list_endpoints()["Endpoints"]}:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_the_other_front_door_takes_over_adopts_the_instances_and_finishes_the_update(
    front_doors: tuple[RunningServer, RunningServer], echo_model: str, tmp_path: Path
) -> None:
    first, second = front_doors
    sm = second.client("sagemaker")
    name = deploy(first.client("sagemaker"), echo_model)
    serving_pid = _invoke(second, name, timeout=10)["pid"]

    # an update whose new instances take a while to load, so it is under way when the first server dies
    slow_model = build_model_tar(tmp_path / "slow" / "model.tar.gz", SLOW_LOADING).as_uri()
    slow = model_and_config(sm, slow_model)
    sm.update_endpoint(EndpointName=name, EndpointConfigName=slow)
    time.sleep(1.0)
    first.process.kill()  # the server that reconciles dies mid-update
    first.process.wait(10)

    # the old instance keeps serving through the other server (no restart: the same process answers)
    for _ in range(5):
        assert _invoke(second, name)["pid"] == serving_pid
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    described = settled(sm, name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == slow
    assert "FailureReason" not in described
    deadline = time.monotonic() + 30
    while _invoke(second, name)["pid"] == serving_pid:  # the route moves to the new instance
        assert time.monotonic() < deadline
        time.sleep(0.2)
    log = (second.state_dir / "logs" / f"{name}.log").read_text()
    assert "adopted" in log
    sm.delete_endpoint(EndpointName=name)
