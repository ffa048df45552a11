"""Every endpoint feature on the Ray provider (`moorage serve --compute ray`), one representative test
each: the same tests the local provider passes, run against one server whose instances are Ray actors on
the session's two-node cluster (127.0.0.2 and 127.0.0.3).

Each test here calls the feature's own test (or its helpers) with this module's server, so the
assertions are exactly those the local provider meets. After each test every endpoint is deleted, so the
next one finds the whole cluster free (it has room for eight of these small instances), and every
instance it started is checked to have run on a Ray node."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.dataplane.policy import choose_variant
from moorage.dataplane.routes import EndpointRoute, VariantRoute
from tests.e2e import test_autoscaling_api as autoscaling
from tests.e2e import test_fleets as fleets
from tests.e2e import test_metrics as metrics
from tests.e2e import test_update as update
from tests.e2e.conftest import FAST_WAIT
from tests.support.images import check_image_with_its_own_server
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster

ENV = {
    "MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS": "10",
    **fleets.FAST,  # health checks every 0.5 s, short grace and back-off, the seeded routing
    **autoscaling.FAST_SCALING,  # a 1 s scaling period
}


@pytest.fixture(scope="module")
def ray_server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(**ENV)
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=ray_nodes.server_args()) as running:
        yield running


@pytest.fixture(scope="module")
def sm(ray_server: RunningServer) -> Any:
    return ray_server.client("sagemaker")


@pytest.fixture(scope="module")
def smr(ray_server: RunningServer) -> Any:
    return ray_server.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def aas(ray_server: RunningServer) -> Any:
    return ray_server.client("application-autoscaling")


_HEALTHY = re.compile(r"instance (i-[0-9a-f]+) is healthy on (.*?) \(\d+ workers\)")


@pytest.fixture(autouse=True)
def on_ray_and_cleaned_up(ray_server: RunningServer, sm: Any) -> Iterator[None]:
    """Afterwards no endpoint is left behind, and every instance the test started ran on a Ray node."""
    logs = ray_server.state_dir / "logs"
    before = {path: path.stat().st_size for path in logs.glob("*.log")} if logs.is_dir() else {}
    yield
    endpoints = sm.list_endpoints(MaxResults=100)["Endpoints"]
    for endpoint in endpoints:
        if endpoint["EndpointStatus"] != "Deleting":
            sm.delete_endpoint(EndpointName=endpoint["EndpointName"])
    for endpoint in endpoints:
        sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint["EndpointName"], WaiterConfig=FAST_WAIT)
    places = []
    for path in logs.glob("*.log"):
        places += [where for _, where in _HEALTHY.findall(path.read_text()[before.get(path, 0) :])]
    assert places, "the test started no instance"
    assert all(where.startswith((f"Ray node {HEAD_IP} ", f"Ray node {SECOND_IP} ")) for where in places), (
        places
    )


def test_weighted_split_of_several_variants_is_the_seeded_one(sm: Any, smr: Any, echo_model: str) -> None:
    """The first test here: the server's seeded routing source has drawn nothing yet, so the split is
    exactly the draws of MOORAGE_ROUTING_SEED (as in test_fleets.test_weighted_split_is_the_seeded_one)."""
    name = fleets._two_variants(sm, echo_model, (1.0, 3.0))
    got = [fleets._invoke(smr, name)[0] for _ in range(2000)]
    route = EndpointRoute("x", [VariantRoute("A", 1.0, 60.0), VariantRoute("B", 3.0, 60.0)], "arn")
    rng = random.Random(fleets.SEED)
    expected = [choose_variant(route, None, rng).name for _ in range(2000)]  # type: ignore[union-attr]
    assert got == expected
    assert 0.72 < Counter(got)["B"] / len(got) < 0.78


def test_target_variant_and_weights_changed_by_update_endpoint_weights(
    sm: Any, smr: Any, echo_model: str
) -> None:
    fleets.test_target_variant_and_weight_zero(sm, smr, echo_model)


def test_scale_out_and_in_under_load(ray_server: RunningServer, sm: Any, echo_model: str) -> None:
    fleets.test_scale_out_and_in_under_load_fail_no_request(ray_server, sm, echo_model)


def test_blue_green_update_without_failed_requests(sm: Any, smr: Any, tmp_path: Path) -> None:
    update.test_update_switches_without_failed_requests(sm, smr, tmp_path)


def test_a_failed_update_rolls_back(sm: Any, smr: Any, tmp_path: Path, echo_model: str) -> None:
    update.test_failed_update_rolls_back(sm, smr, tmp_path, echo_model)


def test_target_tracking_scales_out_under_load(sm: Any, smr: Any, aas: Any, echo_model: str) -> None:
    """It tracks InvocationsPerInstance, which the front door counts; what Ray instances report of their
    CPU and memory (RayInstance.usage) is checked by test_metrics below."""
    autoscaling.test_load_scales_out_and_the_activity_says_why(sm, smr, aas, echo_model)


def test_a_hung_instance_is_replaced(sm: Any, smr: Any, echo_model: str) -> None:
    fleets.test_a_hung_instance_is_taken_out_and_replaced(sm, smr, echo_model)


def test_a_crash_looping_instance_backs_off(ray_server: RunningServer, sm: Any, tmp_path: Path) -> None:
    fleets.test_a_crash_looping_model_backs_off_and_says_why(ray_server, sm, tmp_path)


def test_metrics(ray_server: RunningServer, sm: Any, smr: Any, echo_model: str) -> None:
    metrics.test_metrics_count_what_was_sent(ray_server, sm, smr, echo_model)


def test_an_image_with_its_own_server(
    ray_server: RunningServer, sm: Any, smr: Any, echo_model: str, tmp_path: Path
) -> None:
    check_image_with_its_own_server(ray_server, sm, smr, echo_model, tmp_path)
