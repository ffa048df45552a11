"""Fleets that change size while serving: capacity changes under load, the weighted split, health
checks and crash loops — through a real server and unchanged boto3 clients."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from moorage.dataplane.policy import choose_variant
from moorage.dataplane.routes import EndpointRoute, VariantRoute
from tests.e2e.conftest import FAST_WAIT, deploy, model_dir_tar, unique
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.processes import parent_pid

SEED = 20261205
FAST = {
    "MOORAGE_HEALTH_INTERVAL_SECONDS": "0.5",
    "MOORAGE_HEALTH_TIMEOUT_SECONDS": "1",
    "MOORAGE_HEALTH_FAILURES": "2",
    "MOORAGE_STOP_GRACE_SECONDS": "5",
    "MOORAGE_RESTART_BACKOFF_MAX_SECONDS": "4",
    "MOORAGE_ROUTING_SEED": str(SEED),
}
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("fleets"), env=FAST) as running:
        yield running


@pytest.fixture(scope="module")
def sm(fleet_server: RunningServer) -> Any:
    return fleet_server.client()


@pytest.fixture(scope="module")
def smr(fleet_server: RunningServer) -> Any:
    return fleet_server.client("sagemaker-runtime")


def _invoke(smr: Any, name: str, body: dict[str, Any] | None = None, **extra: Any) -> tuple[str, int]:
    """(invoked variant, worker pid)."""
    response = smr.invoke_endpoint(
        EndpointName=name, ContentType="application/json", Body=json.dumps(body or {}), **extra
    )
    return response["InvokedProductionVariant"], int(json.loads(response["Body"].read())["pid"])


class Load:
    """Clients invoking an endpoint without pause, in threads, recording every outcome."""

    def __init__(self, server: RunningServer, name: str, threads: int = 3, sleep: float = 0.02) -> None:
        self.name = name
        self.ok = 0
        self.pids: Counter[int] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(server.client("sagemaker-runtime"), sleep))
            for _ in range(threads)
        ]

    def _run(self, smr: Any, sleep: float) -> None:
        while not self._stop.is_set():
            try:
                _, pid = _invoke(smr, self.name, {"sleep": sleep})
            except ClientError as err:
                with self._lock:
                    self.failures.append(f"{err.response['Error']}")
                continue
            with self._lock:
                self.ok += 1
                self.pids[pid] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)


def _variants(sm: Any, name: str) -> dict[str, dict[str, Any]]:
    return {v["VariantName"]: v for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]}


def _until(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_scale_out_and_in_under_load_fail_no_request(
    fleet_server: RunningServer, sm: Any, echo_model: str
) -> None:
    name = deploy(sm, echo_model, environment=ONE_WORKER)
    with Load(fleet_server, name) as load:
        _until(lambda: load.ok > 20, what="the load to start")
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 3}],
        )
        described = sm.describe_endpoint(EndpointName=name)
        variant = described["ProductionVariants"][0]
        assert described["EndpointStatus"] == "Updating"
        assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1, 3)
        assert variant["VariantStatus"][0]["Status"] == "Updating"
        assert "from 1 to 3" in variant["VariantStatus"][0]["StatusMessage"]
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        assert _variants(sm, name)["AllTraffic"]["CurrentInstanceCount"] == 3
        before = load.ok
        _until(lambda: load.ok > before + 60, what="more requests")
        assert len(load.pids) >= 2, "the new instances should take traffic"
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
        )
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        variant = _variants(sm, name)["AllTraffic"]
        assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1, 1)
        assert "VariantStatus" not in variant
        before = load.ok
        _until(lambda: load.ok > before + 30, what="requests after the scale-in")
    assert load.failures == []
    assert load.ok > 100


def _two_variants(sm: Any, model: str, weights: tuple[float, float]) -> str:
    name = unique("ab")
    sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": model, "Environment": ONE_WORKER})
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for variant, weight in zip(("A", "B"), weights, strict=True)
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name


def test_weighted_split_is_the_seeded_one(tmp_path: Path, echo_model: str) -> None:
    """With MOORAGE_ROUTING_SEED the split is reproducible: exactly the draws of that seed."""
    with moorage_server(tmp_path / "state", env={"MOORAGE_ROUTING_SEED": str(SEED)}) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        name = _two_variants(sm, echo_model, (1.0, 3.0))
        got = [_invoke(smr, name)[0] for _ in range(2000)]
    route = EndpointRoute("x", [VariantRoute("A", 1.0, 60.0), VariantRoute("B", 3.0, 60.0)], "arn")
    rng = random.Random(SEED)
    expected = [choose_variant(route, None, rng).name for _ in range(2000)]  # type: ignore[union-attr]
    assert got == expected
    share = Counter(got)["B"] / len(got)
    assert 0.72 < share < 0.78


def test_target_variant_and_weight_zero(sm: Any, smr: Any, echo_model: str) -> None:
    name = _two_variants(sm, echo_model, (1.0, 1.0))
    assert {_invoke(smr, name, TargetVariant="B")[0] for _ in range(20)} == {"B"}
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredWeight": 0.0}]
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    variants = _variants(sm, name)
    assert (variants["A"]["CurrentWeight"], variants["A"]["DesiredWeight"]) == (0.0, 0.0)
    assert {_invoke(smr, name)[0] for _ in range(100)} == {"B"}
    assert _invoke(smr, name, TargetVariant="A")[0] == "A"  # a zero weight still answers when targeted
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "B", "DesiredWeight": 0.0}]
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    with pytest.raises(smr.exceptions.ValidationError, match="no variant with a weight above zero"):
        _invoke(smr, name)


def test_capacity_changes_are_validated(sm: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, environment=ONE_WORKER)

    def refused(changes: list[dict[str, Any]], endpoint: str = name) -> dict[str, Any]:
        with pytest.raises(ClientError) as info:
            sm.update_endpoint_weights_and_capacities(
                EndpointName=endpoint, DesiredWeightsAndCapacities=changes
            )
        error: dict[str, Any] = info.value.response["Error"]
        return error

    assert (
        "Could not find endpoint"
        in refused([{"VariantName": "AllTraffic", "DesiredWeight": 1}], "nope")["Message"]
    )
    assert "not present" in refused([{"VariantName": "Other", "DesiredWeight": 1}])["Message"]
    assert "give DesiredWeight" in refused([{"VariantName": "AllTraffic"}])["Message"]
    twice = [{"VariantName": "AllTraffic", "DesiredWeight": 1}] * 2
    assert "more than once" in refused(twice)["Message"]
    assert "at least 1" in refused([{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}])["Message"]
    quota = refused([{"VariantName": "AllTraffic", "DesiredInstanceCount": 100000}])
    assert quota["Code"] == "ResourceLimitExceeded"
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
    )
    busy = refused([{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}])
    assert busy["Code"] == "ValidationException" and "Cannot update in-progress endpoint" in busy["Message"]
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)


def test_a_hung_instance_is_taken_out_and_replaced(sm: Any, smr: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, instances=2, environment=ONE_WORKER)
    pids = {_invoke(smr, name)[1] for _ in range(20)}
    assert len(pids) == 2
    hung_worker = next(iter(pids))
    hung_instance = parent_pid(hung_worker)
    os.killpg(hung_instance, signal.SIGSTOP)  # the whole instance stops answering, without exiting
    try:
        _until(
            lambda: (
                "did not answer GET /ping"
                in json.dumps(_variants(sm, name)["AllTraffic"].get("VariantStatus", []), default=str)
            ),
            what="the health check to give up on the instance",
            timeout=30,
        )
        _until(
            lambda: _variants(sm, name)["AllTraffic"]["CurrentInstanceCount"] == 2,
            timeout=60,
            what="a replacement",
        )
        fresh = {_invoke(smr, name)[1] for _ in range(20)}
        assert hung_worker not in fresh and len(fresh) == 2
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(hung_instance, signal.SIGCONT)


CRASH_LOOP = """
import os, signal, threading

def model_fn(model_dir):
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
    return {}

def transform_fn(model, body, content_type, accept):
    return body, "application/json"
"""


def test_a_crash_looping_model_backs_off_and_says_why(
    fleet_server: RunningServer, sm: Any, tmp_path: Path
) -> None:
    name = deploy(sm, model_dir_tar(tmp_path, "crash", inference=CRASH_LOOP), environment=ONE_WORKER)

    def reported() -> bool:
        status = _variants(sm, name)["AllTraffic"].get("VariantStatus", [])
        return any("failures in a row" in entry["StatusMessage"] for entry in status)

    _until(reported, timeout=30, what="VariantStatus to report the crash loop")
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    log = (fleet_server.state_dir / "logs" / f"{name}.log").read_text()
    assert "exited (status -9)" in log and "next attempt in" in log
    sm.delete_endpoint(EndpointName=name)


def test_the_start_up_bound_is_kept_for_the_deployment(sm: Any, echo_model: str) -> None:
    """The endpoint config a deployment is planned from keeps ContainerStartupHealthCheckTimeoutInSeconds;
    tests/fleet/test_startup_bound.py shows the plan taking it and a real instance failing at it (here, the
    API's 60 s minimum would make that proof wait a minute)."""
    name = unique("bound")
    sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    variant = {
        "VariantName": "v",
        "ModelName": name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "ContainerStartupHealthCheckTimeoutInSeconds": 60,
    }
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    described = sm.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]
    assert described["ContainerStartupHealthCheckTimeoutInSeconds"] == 60
