"""Shadow variants, data capture and deployment guardrails on the Ray provider (`moorage serve --compute
ray`): one server whose instances are Ray actors on the session's two-node cluster, driven by unchanged
boto3 clients, with the same helpers as the local provider's tests (test_shadow_variants,
test_data_capture, test_deployments).

The module's endpoints start together in one fixture. Captured data goes to a folder on the server's disk
rather than the embedded S3 store: capture is written by the server, wherever its instances run, and the
folder spares this small machine a SeaweedFS start."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_data_capture as capture
from tests.e2e import test_deployments as deployments
from tests.e2e import test_ray as ray
from tests.e2e import test_shadow_variants as shadow
from tests.e2e.conftest import FAST_WAIT, deploy, model_dir_tar, unique
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster
from tests.support.traffic import SteadyTraffic

SERVER_ENV = {
    "MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS": "20",
    **capture.FLUSH,  # captured records written every 0.2 s
    **deployments.SERVER_ENV,  # deployment waits at 1 %, alarms and metrics at one-second resolution
}


@pytest.fixture(scope="module")
def server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(**SERVER_ENV)
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The model data of the production model and of its candidate (the shadow, then the canary)."""
    root = tmp_path_factory.mktemp("models")
    return {
        role: model_dir_tar(root, role, files={"weights.txt": role}) for role in ("production", "candidate")
    }


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captured")


@pytest.fixture(scope="module")
def endpoints(sm: Any, models: dict[str, str], captured: Path) -> dict[str, str]:
    """Both of the module's endpoints, created together and waited for together: a production variant
    with a shadow of the candidate copying every request, capturing everything; and the production
    model alone, for the canary."""
    shadowed = unique("shadow")
    sm.create_endpoint_config(
        EndpointConfigName=shadowed,
        ProductionVariants=[shadow._variant("Production", shadow._model(sm, models["production"]))],
        ShadowProductionVariants=[shadow._variant("Shadow", shadow._model(sm, models["candidate"]), 1.0)],
        DataCaptureConfig=capture._capture(captured.as_uri()),
    )
    sm.create_endpoint(EndpointName=shadowed, EndpointConfigName=shadowed)
    names = {"shadowed": shadowed, "canary": deploy(sm, models["production"], wait=False)}
    for name in names.values():
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return names


def _records(root: Path, endpoint: str, variant: str) -> list[dict[str, Any]]:
    """The capture records of one variant in the folder, as SageMaker lays them out."""
    return [
        json.loads(line)
        for path in sorted((root / endpoint / variant).rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def _on_ray_nodes(server: RunningServer, endpoint: str, instances: int) -> None:
    placements = ray._placements(server, endpoint)
    assert len(placements) == instances and set(placements.values()) <= {HEAD_IP, SECOND_IP}, placements


def test_shadow_copies_are_counted_and_captured_beside_production(
    server: RunningServer, sm: Any, smr: Any, endpoints: dict[str, str], captured: Path
) -> None:
    name = endpoints["shadowed"]
    _on_ray_nodes(server, name, instances=2)  # the production variant's and the shadow's
    described = sm.describe_endpoint(EndpointName=name)
    [copying] = described["ShadowProductionVariants"]
    assert (copying["VariantName"], copying["CurrentWeight"], copying["CurrentInstanceCount"]) == (
        "Shadow",
        1.0,
        1,
    )
    assert described["DataCaptureConfig"]["CaptureStatus"] == "Started"

    sent = 12
    for n in range(sent):  # each answered by production (InvokedProductionVariant), echoing n
        assert shadow._invoke(smr, name, n)["greeting"] == "production"

    # every request was copied: answered by the shadow, or shed by its bound on copies in flight
    shadow._until("copies for the shadow", lambda: shadow._copies(server, name), sent)
    answered = shadow._variant_metric(server, "sagemaker_invocations_total", name, "Shadow")
    assert answered >= 1
    assert shadow._variant_metric(server, "sagemaker_invocations_total", name, "Production") == sent

    bodies = sorted(json.dumps({"n": n}).encode() for n in range(sent))
    production = capture._until(lambda: _records(captured, name, "Production"), sent)
    copies = capture._until(lambda: _records(captured, name, "Shadow"), int(answered))
    assert sorted(capture._data(r["captureData"]["endpointInput"]) for r in production) == bodies
    assert {capture._data(r["captureData"]["endpointInput"]) for r in copies} <= set(bodies)
    for variant, records in (("production", production), ("candidate", copies)):
        for record in records:
            asked = json.loads(capture._data(record["captureData"]["endpointInput"]))
            answer = json.loads(capture._data(record["captureData"]["endpointOutput"]))
            assert (answer["greeting"], answer["echo"]) == (variant, asked)
    sm.delete_endpoint(EndpointName=name)


# --- deployment guardrails on Ray (moorage/control/deployment, the CloudWatch API) ---


def test_canary_rolls_back_on_its_alarm_while_requests_are_answered(
    server: RunningServer, sm: Any, smr: Any, endpoints: dict[str, str], models: dict[str, str]
) -> None:
    """The canary's instance starts on the cluster and takes half the traffic; its alarm, forced into
    ALARM while it bakes, brings the endpoint back to the old config and its Ray instance alone."""
    name = endpoints["canary"]
    cw = server.client("cloudwatch")
    alarm = deployments.alarm(cw, name, threshold=1e9)  # fired by SetAlarmState alone
    candidate = deployments.config(sm, models["candidate"])
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 3000,  # 30 s here: the alarm is forced long before
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            },
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }
    tripped: list[deployments.Seen] = []

    def trip_once_the_canary_answered(seen: deployments.Seen) -> None:
        if tripped or "Baking" not in seen.green_statuses():
            return
        deadline = time.monotonic() + 30
        while "candidate" not in traffic.answers:
            assert time.monotonic() < deadline, "the canary answered nothing while baking"
            time.sleep(0.05)
        cw.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="the canary looked wrong")
        tripped.append(seen)

    with SteadyTraffic(smr, name, deployments.greeting, threads=2) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=candidate, DeploymentConfig=deployment)
        _, described = deployments.follow(sm, name, each=trip_once_the_canary_answered)

    assert tripped and tripped[0].weights() == (0.5, 0.5)
    assert deployments.rolled_back(server, name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == name  # the old config serves again
    assert f"CloudWatch alarm {alarm} is in ALARM: the canary looked wrong" in described["FailureReason"]
    assert "PendingDeploymentSummary" not in described
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0
    assert traffic.failures == []
    assert set(traffic.answers) == {"production", "candidate"}
    assert {deployments.invoke(smr, name)["greeting"] for _ in range(4)} == {"production"}
    _on_ray_nodes(server, name, instances=2)  # the old fleet's instance and the canary's
    sm.delete_endpoint(EndpointName=name)
