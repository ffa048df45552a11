"""UpdateEndpoint is blue/green: the old fleet serves until the new one is warm; no request fails."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import FAST_WAIT, deploy, model_dir_tar, unique
from tests.support.processes import parent_pid, running
from tests.support.traffic import SteadyTraffic

SLOW_LOAD = """
import json, time

def model_fn(model_dir):
    time.sleep(1.0)
    return open(model_dir + "/weights.txt").read()

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return model

def output_fn(prediction, accept):
    return json.dumps({"version": prediction})
"""


def test_update_switches_without_failed_requests(sm: Any, smr: Any, tmp_path: Path) -> None:
    name = deploy(
        sm, model_dir_tar(tmp_path, "v1", inference=SLOW_LOAD, files={"weights.txt": "v1"}), instances=2
    )
    v2 = unique("v2")
    sm.create_model(
        ModelName=v2,
        PrimaryContainer={
            "ModelDataUrl": model_dir_tar(tmp_path, "v2", inference=SLOW_LOAD, files={"weights.txt": "v2"}),
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=v2,
        ProductionVariants=[
            {"VariantName": "blue", "ModelName": v2, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    with SteadyTraffic(smr, name, lambda answer: answer["version"], threads=2) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2)
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "Updating"
        assert described["PendingDeploymentSummary"]["EndpointConfigName"] == v2
        assert described["EndpointConfigName"] == name
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        after = [
            json.loads(smr.invoke_endpoint(EndpointName=name, Body=b"{}")["Body"].read())["version"]
            for _ in range(5)
        ]
    assert traffic.failures == []
    assert "v1" in traffic.answers
    assert after == ["v2"] * 5
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointConfigName"] == v2
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["blue"]
    assert "PendingDeploymentSummary" not in described
    sm.delete_endpoint(EndpointName=name)


def test_failed_update_rolls_back(sm: Any, smr: Any, tmp_path: Path, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    broken = unique("broken")
    sm.create_model(
        ModelName=broken,
        PrimaryContainer={
            "ModelDataUrl": model_dir_tar(
                tmp_path, "broken", inference="def model_fn(d):\n    raise ValueError('nope')\n"
            )
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=broken,
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": broken,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.update_endpoint(EndpointName=name, EndpointConfigName=broken)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == name
    assert "nope" in described["FailureReason"]
    response = smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    assert json.loads(response["Body"].read())["greeting"] == "hello"
    sm.delete_endpoint(EndpointName=name)


def test_delete_while_the_old_fleet_drains_stops_it(sm: Any, smr: Any, echo_model: str) -> None:
    """DeleteEndpoint cuts an update's drain short, and still stops the instance that was draining."""
    name = deploy(sm, echo_model)
    first = json.loads(
        smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")["Body"].read()
    )
    old_instance = parent_pid(first["pid"])
    outcome: list[object] = []

    def slow_request() -> None:
        try:
            smr.invoke_endpoint(EndpointName=name, Body=b'{"sleep": 6}', ContentType="application/json")
            outcome.append("answered")
        except Exception as exc:  # the delete may stop the instance before the answer
            outcome.append(exc)

    slow = threading.Thread(target=slow_request)
    slow.start()
    time.sleep(0.5)  # the slow request is in flight on the old fleet
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-2",
        ProductionVariants=[
            {"VariantName": "v2", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-2")
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    assert running(old_instance)  # still draining the slow request
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    deadline = time.monotonic() + 15
    while running(old_instance) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(old_instance)
    slow.join(timeout=30)
