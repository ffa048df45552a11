"""Fixtures: a real store (that refuses sessions on the event loop), a fake clock and fleet, and a real
boto3 client whose requests are served in-process by the same JsonService adapter the server uses (no
app, no port)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from sqlalchemy.orm import Session

from moorage.api import scaling
from moorage.api.json_service import JsonService
from moorage.control.scaling import ScalingEngine, ScalingSettings
from moorage.store import Store, open_store
from tests.control.scaling.fakes import FakeFleetPort
from tests.control.scaling.wire import in_process_client
from tests.support.clock import FakeClock

ACCOUNT = "123456789012"
P = ParamSpec("P")
T = TypeVar("T")


class OffLoopStore(Store):
    """The real store, held to the rule that code on the event loop reaches it only through `run`:
    `session()` fails on a thread that runs an event loop. `run` does the work on a thread of its own, as
    the server's store does, but the loop waits for it: the fake clock lets the loop turn only a few times
    per step, so store work must not let fake time pass while it is under way."""

    def __init__(self, opened: Store) -> None:
        super().__init__(opened.engine)
        self._opened = opened
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="test-store")

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        result = self._worker.submit(work, *args, **kwargs).result()
        await asyncio.sleep(0)  # still a point where other tasks may run, as awaiting the real one is
        return result

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: a store thread, or a test's own set-up
            pass
        else:
            raise AssertionError("store.session() on the event loop: await store.run(...) instead")
        with super().session() as session:
            yield session

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        super().close()
        self._opened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    checked = OffLoopStore(open_store(tmp_path / "state"))
    yield checked
    checked.close()


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
