"""Optimistic concurrency on endpoint rows: every write is conditional on the version its writer read.

Two front doors over one real store (SQLite, and PostgreSQL) stand in for two servers sharing a
database; a race is staged by letting the second one write between the first one's read and its write."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.orm import ORMExecuteState, Session

from moorage.api.errors import ValidationException
from moorage.control import reconciler as reconciler_module
from moorage.control.context import Caller
from moorage.control.endpoints import Endpoints
from moorage.control.quotas import InstanceQuotas
from moorage.control.reconciler import Reconciler
from moorage.control.tags import add_tags
from moorage.dataplane.routes import RoutingTable
from moorage.fleet import FleetContext
from moorage.logs import EndpointLogs
from moorage.store import Store, delete_endpoint, open_store, update_endpoint
from moorage.store import db as store_db
from moorage.store.tables import EndpointConfigRow, EndpointRow, ModelRow
from tests.support.clock import FakeClock

CALLER = Caller("us-east-1", "123456789012")
ARN = CALLER.arn("endpoint", "ep")
VARIANT = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
SNAPSHOT: dict[str, Any] = {
    "config": {"EndpointConfigName": "cfg", "ProductionVariants": [VARIANT]},
    "models": {"m": {"ModelName": "m", "PrimaryContainer": {"Image": "img"}}},
    "accepted_at": 1.0,
}


class _Reconciler:
    """Counts how often the control plane wakes it (after writing a row) and does nothing else."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def wake(self) -> None:
        self.calls.append("wake")

    def variant_states(self, name: str) -> dict[str, Any]:
        return {}


class _Quotas:
    """No limits; runs `meanwhile` once when asked, i.e. between the caller's read and its write."""

    def __init__(self) -> None:
        self.meanwhile: Callable[[], object] | None = None

    def check(self, store: Store, endpoint: str, demand: Counter[str], *, replaces: bool = False) -> None:
        if self.meanwhile is not None:
            hook, self.meanwhile = self.meanwhile, None
            hook()


class _RacingStore(Store):
    """A store that runs `meanwhile` (once) just before its next UPDATE or DELETE statement, that is
    between its caller's read and its write."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.meanwhile: Callable[[], object] | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        with super().session() as session:
            event.listen(session, "do_orm_execute", self._before)
            yield session

    def _before(self, state: ORMExecuteState) -> None:
        if (state.is_update or state.is_delete) and self.meanwhile is not None:
            hook, self.meanwhile = self.meanwhile, None
            hook()


@pytest.fixture
def store(tmp_path: Path, store_url: str) -> Iterator[Store]:
    """On SQLite and on PostgreSQL (`store_url`), where two front doors really are two connections."""
    opened = open_store(tmp_path / "state", store_url)
    with opened.session() as session:
        session.add(
            ModelRow(name="m", arn=CALLER.arn("model", "m"), creation_time=0.0, spec=SNAPSHOT["models"]["m"])
        )
        session.add(
            EndpointConfigRow(
                name="cfg",
                arn=CALLER.arn("endpoint-config", "cfg"),
                creation_time=0.0,
                spec=SNAPSHOT["config"],
            )
        )
    yield opened
    opened.close()


def _front_door(store: Store) -> tuple[Endpoints, _Quotas, _Reconciler]:
    quotas, reconciler = _Quotas(), _Reconciler()
    return Endpoints(store, cast(Reconciler, reconciler), cast(InstanceQuotas, quotas)), quotas, reconciler


def _insert(store: Store, status: str, **values: Any) -> None:
    with store.session() as session:
        session.add(
            EndpointRow(
                name="ep",
                name_key="ep",
                arn=ARN,
                config_name="cfg",
                status=status,
                creation_time=1.0,
                last_modified_time=1.0,
                tags=[],
                generation=0,
                **values,
            )
        )


def _elsewhere(operation: Coroutine[Any, Any, object]) -> None:
    """Another front door's call, run to its end while ours waits on a store thread (its own loop)."""
    asyncio.run(cast(Coroutine[Any, Any, None], operation))


def _row(store: Store) -> EndpointRow | None:
    with store.session() as session:
        return session.get(EndpointRow, "ep")


def test_of_two_writers_that_read_the_same_version_exactly_one_wins(store: Store) -> None:
    _insert(store, "InService", deployed=SNAPSHOT)
    first, second = _row(store), _row(store)
    assert first is not None and second is not None and first.version == second.version == 1
    with store.session() as session:
        assert update_endpoint(session, "ep", first.version, status="Updating")
    with store.session() as session:
        assert not update_endpoint(session, "ep", second.version, status="Deleting")
        assert not delete_endpoint(session, "ep", second.version)
    row = _row(store)
    assert row is not None and (row.status, row.version) == ("Updating", 2)


async def test_two_update_endpoints_racing_one_wins_the_other_is_refused(store: Store) -> None:
    _insert(store, "InService", deployed=SNAPSHOT)
    mine, quotas, my_reconciler = _front_door(store)
    theirs, _, their_reconciler = _front_door(store)
    params = {"EndpointName": "ep", "EndpointConfigName": "cfg"}
    quotas.meanwhile = lambda: _elsewhere(theirs.update(CALLER, params))
    with pytest.raises(
        ValidationException, match=r'Cannot update in-progress endpoint ".*/ep"\..*now Updating'
    ):
        await mine.update(CALLER, params)
    assert their_reconciler.calls == ["wake"]
    assert my_reconciler.calls == []
    row = _row(store)
    assert row is not None and (row.status, row.generation, row.version) == ("Updating", 1, 2)


async def test_capacity_change_losing_to_delete_endpoint_is_refused(store: Store) -> None:
    _insert(store, "InService", deployed=SNAPSHOT)
    mine, quotas, my_reconciler = _front_door(store)
    theirs, _, their_reconciler = _front_door(store)
    quotas.meanwhile = lambda: _elsewhere(theirs.delete(CALLER, {"EndpointName": "ep"}))
    change = {
        "EndpointName": "ep",
        "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredInstanceCount": 2}],
    }
    with pytest.raises(ValidationException, match="its status is now Deleting"):
        await mine.update_weights_and_capacities(CALLER, change)
    assert (my_reconciler.calls, their_reconciler.calls) == ([], ["wake"])
    row = _row(store)
    assert row is not None and row.status == "Deleting" and row.deployed == SNAPSHOT


async def test_delete_endpoint_overtaken_by_an_update_reads_the_row_again_and_deletes(store: Store) -> None:
    """Deletion has no precondition besides existence (it is accepted in any status), so a write that
    overtook it (an UpdateEndpoint, an autoscaler's new count) is no reason to refuse it."""
    _insert(store, "InService", deployed=SNAPSHOT)
    racing = _RacingStore(store)
    mine, _, my_reconciler = _front_door(racing)
    theirs, _, _ = _front_door(store)
    racing.meanwhile = lambda: _elsewhere(
        theirs.update(CALLER, {"EndpointName": "ep", "EndpointConfigName": "cfg"})
    )
    await mine.delete(CALLER, {"EndpointName": "ep"})
    assert my_reconciler.calls == ["wake"]
    row = _row(store)
    assert row is not None and row.status == "Deleting"


async def test_two_create_endpoints_racing_one_wins_the_other_is_told_it_exists(store: Store) -> None:
    mine, quotas, my_reconciler = _front_door(store)
    theirs, _, their_reconciler = _front_door(store)
    params = {"EndpointName": "ep", "EndpointConfigName": "cfg"}
    quotas.meanwhile = lambda: _elsewhere(theirs.create(CALLER, {**params, "EndpointName": "EP"}))
    with pytest.raises(ValidationException, match=r'Cannot create already existing endpoint ".*/ep"'):
        await mine.create(CALLER, params)
    assert (my_reconciler.calls, their_reconciler.calls) == ([], ["wake"])


async def test_a_change_overtaken_by_a_deletion_answers_not_found(store: Store) -> None:
    _insert(store, "InService", deployed=SNAPSHOT)
    mine, quotas, _ = _front_door(store)

    def removed() -> None:
        with store.session() as session:
            assert delete_endpoint(session, "ep", 1)

    quotas.meanwhile = removed
    with pytest.raises(ValidationException, match=r'Could not find endpoint ".*/ep"'):
        await mine.update(CALLER, {"EndpointName": "ep", "EndpointConfigName": "cfg"})
    assert _row(store) is None


def test_a_tag_edit_overtaken_by_another_write_is_applied_again_to_the_new_row(store: Store) -> None:
    _insert(store, "InService", deployed=SNAPSHOT)
    racing = _RacingStore(store)
    racing.meanwhile = lambda: add_tags(store, CALLER, {"ResourceArn": ARN, "Tags": [{"Key": "theirs"}]})
    add_tags(racing, CALLER, {"ResourceArn": ARN, "Tags": [{"Key": "mine", "Value": "v"}]})
    row = _row(store)
    assert row is not None and row.version == 3
    assert row.tags == [{"Key": "theirs", "Value": ""}, {"Key": "mine", "Value": "v"}]


class _Fleet:
    def __init__(self, name: str) -> None:
        self.name = name
        self.route = SimpleNamespace(name=name)
        self.activated = False
        self.retired = asyncio.Event()

    def activate(self) -> None:
        self.activated = True

    async def retire(self, drain: bool, grace: float | None = None) -> None:
        self.retired.set()


@pytest.mark.parametrize("removed", [False, True], ids=["deleting", "deleted"])
async def test_a_creation_that_loses_to_delete_endpoint_stops_its_fleet_and_never_brings_the_row_back(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removed: bool
) -> None:
    _insert(store, "Creating", pending=SNAPSHOT, pending_start_time=1.0)
    deploying, release = asyncio.Event(), asyncio.Event()
    fleet = _Fleet("ep")

    async def deploy(name: str, snapshot: dict[str, Any], ctx: FleetContext) -> _Fleet:
        deploying.set()
        await release.wait()
        return fleet

    monkeypatch.setattr(reconciler_module, "deploy_fleet", deploy)
    ctx = cast(
        FleetContext, SimpleNamespace(logs=EndpointLogs(tmp_path / "logs"), clock=FakeClock(), stats=None)
    )
    table = RoutingTable()
    reconciler = Reconciler(store, table, ctx)
    reconciler.create("ep")
    await deploying.wait()
    # another front door accepts DeleteEndpoint (and, with `removed`, its reconciler removes the row)
    theirs, _, _ = _front_door(store)
    await theirs.delete(CALLER, {"EndpointName": "ep"})
    if removed:
        row = _row(store)
        assert row is not None
        with store.session() as session:
            assert delete_endpoint(session, "ep", row.version)
    release.set()
    await asyncio.wait_for(fleet.retired.wait(), 5)
    assert "ep" not in reconciler.fleets and table.get("ep") is None
    row = _row(store)
    if removed:
        assert row is None
    else:
        assert row is not None and row.status == "Deleting" and row.deployed is None
    await reconciler.shutdown()


async def test_a_creation_overtaken_by_a_tag_edit_still_finishes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _insert(store, "Creating", pending=SNAPSHOT, pending_start_time=1.0)
    fleet = SimpleNamespace(name="ep", route=SimpleNamespace(name="ep"), activate=lambda: None)
    tagged = asyncio.Event()

    async def deploy(name: str, snapshot: dict[str, Any], ctx: FleetContext) -> Any:
        await tagged.wait()
        return fleet

    monkeypatch.setattr(reconciler_module, "deploy_fleet", deploy)
    ctx = cast(
        FleetContext, SimpleNamespace(logs=EndpointLogs(tmp_path / "logs"), clock=FakeClock(), stats=None)
    )
    installed: list[object] = []
    table = SimpleNamespace(install=installed.append)
    reconciler = Reconciler(store, cast(RoutingTable, table), ctx)
    reconciler.create("ep")
    await asyncio.sleep(0)
    add_tags(store, CALLER, {"ResourceArn": ARN, "Tags": [{"Key": "k", "Value": "v"}]})
    tagged.set()
    for _ in range(100):
        if installed:
            break
        await asyncio.sleep(0.01)
    row = _row(store)
    assert row is not None and (row.status, row.tags, row.version) == (
        "InService",
        [{"Key": "k", "Value": "v"}],
        3,
    )
    assert installed == [fleet.route]


def test_the_migration_gives_existing_endpoint_rows_a_version(tmp_path: Path, store_url: str) -> None:
    url = store_db.engine_url(store_url)
    config = Config()
    config.set_main_option("script_location", str(Path(store_db.__file__).parent / "migrations"))
    engine = store_db.make_engine(url)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO endpoints (name, name_key, arn, config_name, status, creation_time, "
                    "last_modified_time, tags, generation) "
                    "VALUES ('old', 'old', 'arn', 'cfg', 'InService', 1.0, 1.0, '[]', 0)"
                )
            )
    finally:
        engine.dispose()
    store = open_store(tmp_path, store_url)
    try:
        with store.session() as session:
            row = session.get(EndpointRow, "old")
            assert row is not None and row.version == 1
            assert update_endpoint(session, "old", 1, status="Updating")
        row = _row_named(store, "old")
        assert (row.status, row.version) == ("Updating", 2)
    finally:
        store.close()


def _row_named(store: Store, name: str) -> EndpointRow:
    with store.session() as session:
        row = session.get(EndpointRow, name)
    assert row is not None
    return row


async def test_the_reconciler_carries_out_a_row_another_front_door_wrote(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No call reaches the reconciler: it finds the Creating row itself (within its poll), deploys it,
    and later finds the Deleting row and removes the endpoint."""
    fleet = _Fleet("ep")

    async def deploy(name: str, snapshot: dict[str, Any], ctx: FleetContext) -> _Fleet:
        return fleet

    monkeypatch.setattr(reconciler_module, "deploy_fleet", deploy)
    ctx = cast(
        FleetContext, SimpleNamespace(logs=EndpointLogs(tmp_path / "logs"), clock=FakeClock(), stats=None)
    )
    installed: list[object] = []
    table = SimpleNamespace(install=installed.append, remove=lambda name: None)
    reconciler = Reconciler(store, cast(RoutingTable, table), ctx, poll_seconds=0.05)
    following = asyncio.create_task(reconciler.follow())
    try:
        _insert(store, "Creating", pending=SNAPSHOT, pending_start_time=1.0)
        for _ in range(200):
            row = _row(store)
            if row is not None and row.status == "InService":
                break
            await asyncio.sleep(0.02)
        assert row is not None and row.status == "InService" and fleet.activated
        assert installed == [fleet.route]
        theirs, _, _ = _front_door(store)
        await theirs.delete(CALLER, {"EndpointName": "ep"})
        await asyncio.wait_for(fleet.retired.wait(), 5)
        for _ in range(200):
            if _row(store) is None:
                break
            await asyncio.sleep(0.02)
        assert _row(store) is None and "ep" not in reconciler.fleets
    finally:
        following.cancel()
        await reconciler.shutdown()
