"""A serverless endpoint on the Ray provider (`moorage serve --compute ray`): the first request at zero
instances is held while an instance starts as a Ray actor on the session's two-node cluster, and answered
from it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.e2e import test_serverless as serverless
from tests.e2e.conftest import FAST_WAIT
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster
from tests.support.serverless import invoke_json, serverless_endpoint

_HEALTHY = re.compile(r"instance i-[0-9a-f]+ is healthy on (.*?) \(\d+ workers\)")


@pytest.fixture(scope="module")
def ray_server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(
        MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS="20",
        MOORAGE_SERVERLESS_IDLE_SECONDS=str(serverless.IDLE_SECONDS),
    )
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return serverless.build_model_tar(
        tmp_path_factory.mktemp("models") / "serverless" / "model.tar.gz", serverless.SERVERLESS_INFERENCE
    ).as_uri()


def test_request_at_zero_instances_is_answered_by_a_ray_instance(
    ray_server: RunningServer, model_url: str
) -> None:
    sm, smr = ray_server.client("sagemaker"), ray_server.client("sagemaker-runtime")
    # MaxConcurrency 2 on a 2-CPU server, but the actor reserves 1 CPU: one worker
    name = serverless_endpoint(sm, model_url, max_concurrency=2)
    assert serverless._instances(ray_server, name) == 0

    assert invoke_json(smr, name, {"on": "ray"})["echo"] == {"on": "ray"}
    places = _HEALTHY.findall((ray_server.state_dir / "logs" / f"{name}.log").read_text())
    assert len(places) == 1 and places[0].startswith((f"Ray node {HEAD_IP} ", f"Ray node {SECOND_IP} "))
    assert "(1 workers)" in (ray_server.state_dir / "logs" / f"{name}.log").read_text()

    serverless._wait_for(lambda: serverless._instances(ray_server, name) == 0, "the idle scale-down")
    assert invoke_json(smr, name, {"again": 1})["echo"] == {"again": 1}
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
