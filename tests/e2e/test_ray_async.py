"""Asynchronous inference on the Ray provider (`moorage serve --compute ray`): the queue runs on the server,
the model on Ray actors; requests reach them over TCP like real-time ones, results and notifications
come out the same as with local instances."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_async import ERROR_TOPIC, RECORDING_MODEL, SUCCESS_TOPIC, Webhook, deploy_async
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster

_HEALTHY = re.compile(r"instance (i-[0-9a-f]+) is healthy on (.*?) \(\d+ workers\)")


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.httpd.shutdown()


@pytest.fixture(scope="module")
def ray_server(
    ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory, webhook: Webhook
) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(
        MOORAGE_SNS_WEBHOOKS=f"{SUCCESS_TOPIC}={webhook.url},{ERROR_TOPIC}={webhook.url}"
    )
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


def test_async_requests_run_on_ray_instances(
    ray_server: RunningServer, webhook: Webhook, tmp_path: Path
) -> None:
    sm, smr = ray_server.client(), ray_server.client("sagemaker-runtime")
    model = build_model_tar(tmp_path / "m" / "model.tar.gz", RECORDING_MODEL).as_uri()
    out = tmp_path / "out"
    config = {
        "OutputConfig": {
            "S3OutputPath": out.as_uri(),
            "NotificationConfig": {"SuccessTopic": SUCCESS_TOPIC, "ErrorTopic": ERROR_TOPIC},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }
    name = deploy_async(sm, model, config, instances=2)
    answers = [
        smr.invoke_endpoint_async(
            EndpointName=name, Body=json.dumps({"n": n}).encode(), ContentType="application/json"
        )
        for n in range(20)
    ]
    failing = smr.invoke_endpoint_async(
        EndpointName=name, Body=json.dumps({"crash": "on ray"}).encode(), ContentType="application/json"
    )
    deadline = time.monotonic() + 120
    paths = [Path(a["OutputLocation"].removeprefix("file://")) for a in answers]
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.1)
    for n, path in enumerate(paths):
        assert json.loads(path.read_text()) == {"echo": {"n": n}}
    _, envelope = webhook.message_for(answers[-1]["InferenceId"])
    assert json.loads(envelope["Message"])["invocationStatus"] == "Completed"
    _, envelope = webhook.message_for(failing["InferenceId"])
    assert "boom: on ray" in json.loads(envelope["Message"])["failureReason"]
    assert "boom: on ray" in Path(failing["FailureLocation"].removeprefix("file://")).read_text()

    places = _HEALTHY.findall((ray_server.state_dir / "logs" / f"{name}.log").read_text())
    assert len(places) == 2
    assert all(where.startswith((f"Ray node {HEAD_IP} ", f"Ray node {SECOND_IP} ")) for _, where in places)
    sm.delete_endpoint(EndpointName=name)
