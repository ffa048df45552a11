"""Fixtures: a real store, a fake clock and fleet, and a real boto3 client whose requests are served
in-process by the same JsonService adapter the server uses (no app, no port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.api import scaling
from moorage.api.json_service import JsonService
from moorage.control.scaling import ScalingEngine, ScalingSettings
from moorage.store import Store, open_store
from tests.control.scaling.fakes import FakeFleetPort
from tests.control.scaling.wire import in_process_client
from tests.support.clock import FakeClock

ACCOUNT = "123456789012"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "state")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fleet(clock: FakeClock) -> FakeFleetPort:
    port = FakeFleetPort(clock)
    port.add("ep", "v", instances=2)
    return port


@pytest.fixture
def settings() -> ScalingSettings:
    """Fast periods: one look a second, a period of 6 s, alarms of 3 (out) and 5 (in) datapoints."""
    return ScalingSettings(period_seconds=6, scale_out_datapoints=3, scale_in_datapoints=5)


@pytest.fixture
def engine(store: Store, fleet: FakeFleetPort, clock: FakeClock, settings: ScalingSettings) -> ScalingEngine:
    return ScalingEngine(store, fleet, clock, settings)


@pytest.fixture
def aas(store: Store, fleet: FakeFleetPort, clock: FakeClock, engine: ScalingEngine) -> Any:
    service = JsonService(
        "application-autoscaling",
        scaling.operations(store, fleet, clock, engine),
        account=ACCOUNT,
        default_region="us-east-1",
        max_body_bytes=1024 * 1024,
    )
    return in_process_client(service)
