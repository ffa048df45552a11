"""Instances on a real Ray cluster (`moorage serve --compute ray`): two nodes on this machine, each on its
own loopback address, driven by unchanged boto3 clients.

The endpoint log says where each instance runs, and the processes themselves say it too: a worker
listening on 127.0.0.3 can only belong to the second node."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FAST_WAIT, deploy, settled
from tests.e2e.test_client_cli import moorage
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster


# instances sized to fit this small machine: four of them fit on one 2-CPU, 2 GiB node
@pytest.fixture(scope="module")
def ray_server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(
        MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS="5",
        # a lost node is noticed by the health check within ~2 s
        MOORAGE_HEALTH_INTERVAL_SECONDS="0.5",
        MOORAGE_HEALTH_TIMEOUT_SECONDS="0.5",
    )
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


def _placements(server: RunningServer, name: str) -> dict[str, str]:
    """instance id -> node address, from the endpoint log's 'is healthy on Ray node …' lines."""
    log = (server.state_dir / "logs" / f"{name}.log").read_text()
    return dict(re.findall(r"instance (i-[0-9a-f]+) is healthy on Ray node ([0-9.]+)", log))


def _invoke(smr: Any, name: str, body: bytes = b'{"x": 1}') -> Any:
    reply = smr.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
    return json.loads(reply["Body"].read())


def test_instances_of_a_variant_spread_over_the_nodes_and_serve(
    ray_server: RunningServer, echo_model: str
) -> None:
    sm, smr = ray_server.client("sagemaker"), ray_server.client("sagemaker-runtime")
    name = deploy(sm, echo_model, instances=2)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert sorted(_placements(ray_server, name).values()) == [HEAD_IP, SECOND_IP]
    # `moorage describe` says which node each instance runs on
    shown = moorage("describe", name, url=ray_server.url)
    assert shown.returncode == 0, shown.stderr
    nodes = re.findall(r"Instance (i-[0-9a-f]+)\s+Ray node ([0-9.]+)", shown.stdout)
    assert sorted(nodes) == sorted(_placements(ray_server, name).items())
    for i in range(10):
        assert _invoke(smr, name, json.dumps({"i": i}).encode())["echo"] == {"i": i}
    # the front door talks to the workers directly, over TCP on the nodes' addresses
    listening = subprocess.run(["ss", "-tln"], capture_output=True, text=True).stdout
    assert f"{SECOND_IP}:" in listening
    sm.delete_endpoint(EndpointName=name)


def test_a_cluster_without_room_fails_the_endpoint_naming_what_was_missing(
    ray_server: RunningServer, echo_model: str
) -> None:
    sm = ray_server.client("sagemaker")
    name = deploy(sm, echo_model, instance_type="ml.m5.4xlarge", wait=False)
    described = settled(sm, name, timeout=120)
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "No node of the Ray cluster had room" in reason
    assert "ml.m5.4xlarge: 16 CPU, 64 GiB memory" in reason
    sm.delete_endpoint(EndpointName=name)


def test_an_unreachable_ray_address_fails_start_up_in_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    serve = [sys.executable, "-m", "moorage", "serve", "--no-s3", "--port", "0", "--state-dir", str(tmp_path)]
    done = subprocess.run(
        [*serve, "--compute", "ray", "--ray-address", "127.0.0.9:6399", "--ray-node-address", "127.0.0.9"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"MOORAGE_RAY_CONNECT_TIMEOUT_SECONDS": "5", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2, done.stderr
    assert "127.0.0.9:6399" in done.stderr
    assert "Ray cluster" in done.stderr
    assert time.monotonic() - started < 60


def test_another_installation_on_the_same_cluster_leaves_these_instances_alone(
    ray_server: RunningServer, ray_nodes: RayCluster, echo_model: str, tmp_path: Path
) -> None:
    """A second installation (its own database) starts on the same cluster: it adopts and releases only
    what its own database left there, so this one's instance goes on serving, the same process."""
    sm, smr = ray_server.client("sagemaker"), ray_server.client("sagemaker-runtime")
    name = deploy(sm, echo_model)
    serving = _invoke(smr, name)["pid"]
    other = moorage_server(tmp_path / "other", env=ray_nodes.server_env(), args=ray_nodes.server_args())
    with other:  # up: it has adopted and released
        assert _invoke(smr, name)["pid"] == serving
    assert _invoke(smr, name)["pid"] == serving
    sm.delete_endpoint(EndpointName=name)


def test_a_lost_node_has_its_instance_replaced_on_the_node_left(
    ray_server: RunningServer, ray_nodes: RayCluster, echo_model: str
) -> None:
    """Runs last in this module: it stops the second node (and starts it again afterwards)."""
    sm, smr = ray_server.client("sagemaker"), ray_server.client("sagemaker-runtime")
    name = deploy(sm, echo_model, instances=2)
    placements = _placements(ray_server, name)
    assert sorted(placements.values()) == [HEAD_IP, SECOND_IP]
    try:
        ray_nodes.second.stop()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = _placements(ray_server, name)
            replacements = {i: node for i, node in now.items() if i not in placements}
            if replacements:
                break
            time.sleep(0.2)
        assert list(replacements.values()) == [HEAD_IP], _placements(ray_server, name)
        waiter = sm.get_waiter("endpoint_in_service")
        waiter.wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        deadline = time.monotonic() + 60
        while sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # every request that arrives after the replacement is answered
        for i in range(20):
            assert _invoke(smr, name, json.dumps({"i": i}).encode())["echo"] == {"i": i}
        sm.delete_endpoint(EndpointName=name)
    finally:
        ray_nodes.start_second()
