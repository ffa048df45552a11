"""Deployment guardrails end to end: UpdateEndpoint's DeploymentConfig (canary, linear, rolling), rollback
on CloudWatch alarms (boto3 "cloudwatch") and on MaximumExecutionTimeoutInSeconds, what DescribeEndpoint
shows meanwhile, and that requests never fail because of a deployment.

One server for the module, its deployment waits scaled by MOORAGE_DEPLOYMENT_TIME_SCALE=0.01 (a 200 s
bake takes 2 s) and its metrics and alarms at one-second resolution."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy, model_and_config, model_dir_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.processes import parent_pid, running
from tests.support.traffic import SteadyTraffic

SCALE = 0.01
SERVER_ENV = {
    "MOORAGE_DEPLOYMENT_TIME_SCALE": str(SCALE),
    "MOORAGE_ALARM_MIN_PERIOD_SECONDS": "1",
    "MOORAGE_METRIC_RESOLUTION_SECONDS": "1",
    "MOORAGE_ALARM_EVALUATION_SECONDS": "0.5",
}
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}

# answers every request with a server error: the canary that must be rolled back
BROKEN_PREDICT = """
import json

def model_fn(model_dir):
    return "v-broken"

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    raise RuntimeError("the canary is broken")

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""

# cannot start again once the file FAIL_FLAG names exists (the old fleet of a failed rollback)
FLAGGED_LOAD = """
import json, os

def model_fn(model_dir):
    if os.path.exists(os.environ["FAIL_FLAG"]):
        raise RuntimeError("this model cannot load any more")
    return open(os.path.join(model_dir, "weights.txt")).read().strip()

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    return {"greeting": model, "pid": os.getpid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), env=SERVER_ENV) as running_server:
        yield running_server


@pytest.fixture(scope="module")
def cw(server: RunningServer) -> Any:
    return server.client("cloudwatch")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {
        "v1": model_dir_tar(root, "v1", files={"weights.txt": "v1"}),
        "v2": model_dir_tar(root, "v2", files={"weights.txt": "v2"}),
        "broken": model_dir_tar(root, "broken", inference=BROKEN_PREDICT),
        "flagged": model_dir_tar(root, "flagged", inference=FLAGGED_LOAD, files={"weights.txt": "v1"}),
    }


@dataclass
class Seen:
    """One DescribeEndpoint while a deployment ran, reduced to what the tests look at."""

    at: float  # monotonic
    status: str
    blue: list[dict[str, Any]]  # ProductionVariants
    green: list[dict[str, Any]] = field(default_factory=list)  # PendingDeploymentSummary's variants

    def weights(self) -> tuple[float, float]:
        """(old, new) CurrentWeight of the one variant."""
        return self.blue[0]["CurrentWeight"], (self.green[0]["CurrentWeight"] if self.green else 0.0)

    def counts(self) -> tuple[int, int]:
        return self.blue[0]["CurrentInstanceCount"], (
            self.green[0]["CurrentInstanceCount"] if self.green else 0
        )

    def green_statuses(self) -> list[str]:
        return [s["Status"] for s in self.green[0].get("VariantStatus", [])] if self.green else []


def follow(
    sm: Any, name: str, until: tuple[str, ...] = ("InService",), each: Callable[[Seen], None] | None = None
) -> tuple[list[Seen], dict[str, Any]]:
    """Describe the endpoint every 0.1 s until its status is one of `until` (after it left it): every
    change seen, and the last description."""
    seen: list[Seen] = []
    deadline = time.monotonic() + 120
    while True:
        described = sm.describe_endpoint(EndpointName=name)
        pending = described.get("PendingDeploymentSummary", {}).get("ProductionVariants", [])
        now = Seen(time.monotonic(), described["EndpointStatus"], described["ProductionVariants"], pending)
        if not seen or (now.status, now.blue, now.green) != (seen[-1].status, seen[-1].blue, seen[-1].green):
            seen.append(now)
            if each is not None:
                each(now)
        if now.status in until and len(seen) > 1:
            return seen, described
        assert time.monotonic() < deadline, f"still {now.status} after 120 s: {seen[-3:]}"
        time.sleep(0.1)


def alarm(cw: Any, endpoint: str, threshold: float = 0) -> str:
    """An alarm on the endpoint's server errors, in AWS's shape: more than `threshold` 5XX answers in a
    one-second period fire it (a huge threshold: an alarm only SetAlarmState fires)."""
    name = f"{endpoint}-errors-{uuid.uuid4().hex[:6]}"
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[
            {"Name": "EndpointName", "Value": endpoint},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        Statistic="Sum",
        Period=1,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    return name


def config(sm: Any, model: str, instances: int = 1, environment: dict[str, str] | None = None) -> str:
    return model_and_config(sm, model, instances=instances, environment={**ONE_WORKER, **(environment or {})})


def rolled_back(server: RunningServer, name: str) -> bool:
    """Whether the endpoint went through RollingBack (often too short for DescribeEndpoint to catch: the
    new fleet drains its few in-flight requests and stops), as its log says."""
    return "Rolling back: " in (server.state_dir / "logs" / f"{name}.log").read_text()


def greeting(answer: Any) -> str:
    return str(answer["greeting"])


def invoke(smr: Any, name: str) -> dict[str, Any]:
    response = smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    answer: dict[str, Any] = json.loads(response["Body"].read())
    return answer


def test_failing_canary_rolls_back_on_its_alarm(
    server: RunningServer, sm: Any, smr: Any, cw: Any, models: dict[str, str]
) -> None:
    name = deploy(sm, models["v1"])
    errors = alarm(cw, name)
    broken = config(sm, models["broken"])
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 1500,  # 15 s: the alarm fires long before
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            },
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": errors}]},
    }
    with SteadyTraffic(smr, name, greeting, threads=2) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=broken, DeploymentConfig=deployment)
        seen, described = follow(sm, name)
    statuses = [s.status for s in seen]
    assert statuses[0] == "Updating" and statuses[-1] == "InService"
    assert rolled_back(server, name)
    canary = next(s for s in seen if s.green_statuses()[:1] == ["ActivatingTraffic"])
    assert canary.status == "Updating"
    assert canary.weights() == (0.75, 0.25)
    assert canary.green_statuses() == ["ActivatingTraffic", "Baking"]
    assert described["EndpointConfigName"] == name  # the old config serves again
    assert errors in described["FailureReason"] and "rolled back" in described["FailureReason"]
    assert "PendingDeploymentSummary" not in described
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0
    # only what the canary answered failed: its own server errors, nothing the deployment caused
    assert traffic.failures, "the canary took no traffic"
    for failure in traffic.failures:
        assert isinstance(failure, ClientError), failure
        assert failure.response["Error"]["Code"] == "ModelError"
        assert "the canary is broken" in failure.response["OriginalMessage"]
    assert len(traffic.failures) < len(traffic.answers)  # a quarter of the traffic at most, for a while
    assert set(traffic.answers) == {"v1"}
    assert invoke(smr, name)["greeting"] == "v1"
    sm.delete_endpoint(EndpointName=name)


def test_linear_update_moves_traffic_in_steps(sm: Any, smr: Any, models: dict[str, str]) -> None:
    name = deploy(sm, models["v1"])
    blue_pid = parent_pid(invoke(smr, name)["pid"])
    v2 = config(sm, models["v2"])
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 200,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            },
            "TerminationWaitInSeconds": 200,
            "MaximumExecutionTimeoutInSeconds": 1000,
        }
    }
    answered: list[tuple[float, str]] = []

    def timed(answer: Any) -> str:
        answered.append((time.monotonic(), greeting(answer)))
        return greeting(answer)

    blue_alive_while_waiting: list[bool] = []

    def during(seen: Seen) -> None:
        if seen.blue[0].get("VariantStatus", [{}])[0].get("Status") == "Deleting":
            blue_alive_while_waiting.append(running(blue_pid))

    with SteadyTraffic(smr, name, timed, threads=2) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, DeploymentConfig=deployment)
        seen, described = follow(sm, name, each=during)
    assert traffic.failures == []
    steps = [s.weights() for s in seen if s.status == "Updating"]
    assert list(dict.fromkeys(steps)) == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    half = [s for s in seen if s.weights() == (0.5, 0.5)]
    assert half[0].green_statuses() == ["ActivatingTraffic", "Baking"]
    # while half the traffic moved, both fleets answered; once it all moved, only the new one
    start, end = half[0].at, next(s.at for s in seen if s.weights() == (0.0, 1.0))
    assert {g for t, g in answered if start + 0.3 < t < end - 0.3} == {"v1", "v2"}
    waiting = [s for s in seen if s.blue[0].get("VariantStatus", [{}])[0].get("Status") == "Deleting"]
    assert waiting, "no TerminationWaitInSeconds seen"
    assert waiting[0].counts() == (1, 1)  # the old instance stays until the wait has passed
    assert blue_alive_while_waiting and all(blue_alive_while_waiting)
    assert {g for t, g in answered if t > waiting[0].at + 0.3} == {"v2"}
    assert described["EndpointConfigName"] == v2 and described.get("FailureReason") is None
    assert described["LastDeploymentConfig"] == deployment
    deadline = time.monotonic() + 30
    while running(blue_pid):  # drained, then stopped
        assert time.monotonic() < deadline
        time.sleep(0.1)
    sm.delete_endpoint(EndpointName=name)


def test_maximum_execution_timeout_rolls_back(
    server: RunningServer, sm: Any, smr: Any, models: dict[str, str]
) -> None:
    """A 590 s bake fits a 600 s timeout only if the new fleet starts in no time: it does not."""
    name = deploy(sm, models["v1"])
    v2 = config(sm, models["v2"])
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 590},
            "MaximumExecutionTimeoutInSeconds": 600,
        }
    }
    with SteadyTraffic(smr, name, greeting) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, DeploymentConfig=deployment)
        _, described = follow(sm, name)
    assert rolled_back(server, name)
    assert described["EndpointConfigName"] == name
    assert (
        "MaximumExecutionTimeoutInSeconds (600 s; 6 s at MOORAGE_DEPLOYMENT_TIME_SCALE=0.01)"
        in (described["FailureReason"])
    )
    assert traffic.failures == []
    assert set(traffic.answers) == {"v1", "v2"}  # all traffic moved, then came back
    sm.delete_endpoint(EndpointName=name)


def test_rolling_update_moves_batch_by_batch(sm: Any, smr: Any, models: dict[str, str]) -> None:
    name = deploy(sm, models["v1"], instances=2)
    v2 = config(sm, models["v2"], instances=2)
    deployment = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 150,
        }
    }
    with SteadyTraffic(smr, name, greeting, threads=2) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, DeploymentConfig=deployment)
        seen, described = follow(sm, name)
    assert traffic.failures == []
    counts = [s.counts() for s in seen if s.status == "Updating"]
    # (old, new) instances: a new one joins and bakes, an old one leaves; again; then the old fleet is gone.
    # The old fleet only shrinks, the new one only grows, and together they never pass one batch more
    # than the endpoint's size
    assert [c for c in dict.fromkeys(counts) if c in {(2, 1), (1, 2)}] == [(2, 1), (1, 2)]
    assert all(a[0] >= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(counts))
    assert max(old + new for old, new in counts) == 3
    first = next(s for s in seen if s.counts() == (2, 1))
    assert first.weights() == (pytest.approx(2 / 3), pytest.approx(1 / 3))  # traffic follows capacity
    assert described["EndpointConfigName"] == v2
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    sm.delete_endpoint(EndpointName=name)


def test_set_alarm_state_while_baking_rolls_back(
    server: RunningServer, sm: Any, smr: Any, cw: Any, models: dict[str, str]
) -> None:
    name = deploy(sm, models["v1"])
    latency = alarm(cw, name, threshold=1e9)
    v2 = config(sm, models["v2"])
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 2000},
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": latency}]},
    }

    def trip_when_baking(seen: Seen) -> None:
        if "Baking" in seen.green_statuses():
            cw.set_alarm_state(
                AlarmName=latency, StateValue="ALARM", StateReason="Latency looked wrong to me"
            )

    with SteadyTraffic(smr, name, greeting) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, DeploymentConfig=deployment)
        _, described = follow(sm, name, each=trip_when_baking)
    assert rolled_back(server, name)
    assert described["EndpointConfigName"] == name
    assert f"CloudWatch alarm {latency} is in ALARM: Latency looked wrong to me" in described["FailureReason"]
    assert traffic.failures == []
    sm.delete_endpoint(EndpointName=name)


def test_rolling_rollback_that_cannot_restart_the_old_fleet(
    server: RunningServer, sm: Any, smr: Any, cw: Any, models: dict[str, str], tmp_path: Path
) -> None:
    """The old instances a rolling update stopped cannot start again: UpdateRollbackFailed, serving from
    both fleets, until another update (blue/green) brings the endpoint back to one config."""
    flag = tmp_path / "broken"
    name = deploy(sm, models["flagged"], instances=2, environment={"FAIL_FLAG": str(flag)})
    tripwire = alarm(cw, name, threshold=1e9)
    v2 = config(sm, models["v2"], instances=2)
    deployment = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 300,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": tripwire}]},
    }

    def trip_in_second_batch(seen: Seen) -> None:
        if seen.counts() == (1, 2) and "Baking" in seen.green_statuses():
            flag.write_text("")
            cw.set_alarm_state(AlarmName=tripwire, StateValue="ALARM", StateReason="second batch is bad")

    with SteadyTraffic(smr, name, greeting, threads=2) as traffic:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, DeploymentConfig=deployment)
        _, described = follow(
            sm, name, until=("UpdateRollbackFailed", "InService"), each=trip_in_second_batch
        )
    assert described["EndpointStatus"] == "UpdateRollbackFailed", described.get("FailureReason")
    assert rolled_back(server, name)
    assert "could not be started again" in described["FailureReason"]
    assert traffic.failures == []
    assert set(traffic.answers) == {"v1", "v2"}
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1  # what the old fleet kept
    assert described["PendingDeploymentSummary"]["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    with pytest.raises(ClientError, match="rolling update replaces the instances of one"):
        sm.update_endpoint(EndpointName=name, EndpointConfigName=name, RetainDeploymentConfig=True)
    flag.unlink()
    sm.update_endpoint(EndpointName=name, EndpointConfigName=name)  # all at once, back to the old config
    _, described = follow(sm, name)
    assert described["EndpointConfigName"] == name and described.get("FailureReason") is None
    assert "PendingDeploymentSummary" not in described
    assert {invoke(smr, name)["greeting"] for _ in range(6)} == {"v1"}
    sm.delete_endpoint(EndpointName=name)


def test_delete_during_a_deployment_stops_both_fleets(sm: Any, smr: Any, models: dict[str, str]) -> None:
    name = deploy(sm, models["v1"])
    v2 = config(sm, models["v2"])
    routing = {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 3000,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
    }
    sm.update_endpoint(
        EndpointName=name,
        EndpointConfigName=v2,
        DeploymentConfig={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing}},
    )
    instances: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while len(instances) < 2:  # once half the traffic moved, both fleets answer
        answer = invoke(smr, name)
        instances[answer["greeting"]] = parent_pid(answer["pid"])
        assert time.monotonic() < deadline, instances
    sm.delete_endpoint(EndpointName=name)
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in instances.values()):
        assert time.monotonic() < deadline, "an instance outlived DeleteEndpoint"
        time.sleep(0.1)
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=name)


def test_deployment_configs_refused_as_sagemaker_refuses_them(sm: Any, models: dict[str, str]) -> None:
    name = deploy(sm, models["v1"])
    v2 = config(sm, models["v2"])

    def refused(**params: Any) -> str:
        with pytest.raises(ClientError) as error:
            sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, **params)
        assert error.value.response["Error"]["Code"] == "ValidationException"
        return str(error.value.response["Error"]["Message"])

    canary = {"Type": "INSTANCE_COUNT", "Value": 1}  # all of a one-instance fleet
    routing = {"Type": "CANARY", "WaitIntervalInSeconds": 60, "CanarySize": canary}
    assert "at most 50%" in refused(
        DeploymentConfig={"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing}}
    )
    assert "at least 2 instances" in refused(
        DeploymentConfig={"RollingUpdatePolicy": {"MaximumBatchSize": canary, "WaitIntervalInSeconds": 60}}
    )
    assert "do not exist: nowhere" in refused(
        DeploymentConfig={"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "nowhere"}]}}
    )
    renamed = model_and_config(sm, models["v2"], variant="Renamed")
    with pytest.raises(ClientError, match="same variant names"):
        sm.update_endpoint(
            EndpointName=name,
            EndpointConfigName=renamed,
            DeploymentConfig={
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
                }
            },
        )
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"  # nothing was accepted
    sm.delete_endpoint(EndpointName=name)


def test_restart_during_a_rolling_update_starts_it_again_from_the_old_fleet(
    tmp_path: Path, models: dict[str, str]
) -> None:
    """The server dies after the rolling update stopped an old instance: the next server starts the
    deployed (old) config at its full size before it answers, then runs the update again from the start."""
    state = tmp_path / "state"
    deployment = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": 150,
        }
    }
    with moorage_server(state, env=SERVER_ENV) as first:
        sm = first.client()
        name = deploy(sm, models["v1"], instances=2)
        v2 = config(sm, models["v2"], instances=2)
        sm.update_endpoint(EndpointName=name, EndpointConfigName=v2, DeploymentConfig=deployment)
        deadline = time.monotonic() + 60
        while sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"] != 1:
            assert time.monotonic() < deadline, "the old fleet never shrank"
            time.sleep(0.1)
        first.process.kill()
        first.process.wait()
    with moorage_server(state, env=SERVER_ENV) as second:
        sm, smr = second.client(), second.client("sagemaker-runtime")
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "Updating"
        assert described["EndpointConfigName"] == name
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2  # whole again
        assert invoke(smr, name)["greeting"] == "v1"
        seen, described = follow(sm, name)
        assert (2, 1) in [s.counts() for s in seen]  # from the first batch again
        assert described["EndpointConfigName"] == v2
        assert {invoke(smr, name)["greeting"] for _ in range(4)} == {"v2"}
        sm.delete_endpoint(EndpointName=name)
