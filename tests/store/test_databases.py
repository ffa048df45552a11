"""The store on both databases it supports: SQLite in the state dir and PostgreSQL (psycopg 3). The
migrations build exactly the declared tables on each, rows round-trip unchanged, several servers may
migrate one PostgreSQL database at once, and a URL the store cannot use is refused in one line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import make_url, select

from moorage.store import db as store_db
from moorage.store import open_store
from moorage.store.db import STORE_THREADS, StoreError, engine_url, make_engine, migrate
from moorage.store.tables import Base, ImageRow, ScalingActivityRow
from tests.support.postgres import PostgresServer, newest_revision


def test_the_migrations_create_every_table_as_declared(tmp_path: Path, store_url: str) -> None:
    store = open_store(tmp_path, store_url)
    try:
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        store.close()


def test_rows_round_trip_unchanged(tmp_path: Path, store_url: str) -> None:
    """Booleans, JSON (nested, non-ASCII, null members), floats to the microsecond, and insertion order."""
    store = open_store(tmp_path, store_url)
    environment = {"GREETING": "grüße ✓", "EMPTY": ""}
    try:
        with store.session() as session:
            for own_server in (True, False):
                session.add(
                    ImageRow(
                        uri=f"example/{own_server}:1",
                        source="command line",
                        python="3.11",
                        requirements=["numpy>=1.26"],
                        command=["serve", "--port", "8080"] if own_server else None,
                        own_server=own_server,
                        environment=environment,
                        dropped=[],
                        registered_at=1712345678.123456,
                    )
                )
            for n in range(3):
                session.add(
                    ScalingActivityRow(
                        activity_id=f"a{n}",
                        service_namespace="sagemaker",
                        resource_id="endpoint/ep/variant/v",
                        scalable_dimension="sagemaker:variant:DesiredInstanceCount",
                        kind="scale-out",
                        description="d",
                        cause="c",
                        start_time=float(n),
                        status_code="Successful",
                        not_scaled_reasons=[{"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 2, "x": None}],
                    )
                )
        with store.session() as session:
            images = {row.own_server: row for row in session.scalars(select(ImageRow))}
            assert set(images) == {True, False}
            assert images[True].command == ["serve", "--port", "8080"] and images[False].command is None
            assert images[True].environment == environment
            assert images[True].registered_at == 1712345678.123456
            own = session.scalars(select(ImageRow.uri).where(ImageRow.own_server.is_(True))).all()
            assert own == ["example/True:1"]
            activities = session.scalars(select(ScalingActivityRow).order_by(ScalingActivityRow.seq)).all()
            assert [row.activity_id for row in activities] == ["a0", "a1", "a2"]
            assert activities[0].not_scaled_reasons == [
                {"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 2, "x": None}
            ]
    finally:
        store.close()


def test_servers_starting_together_migrate_one_postgresql_database_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.url(postgres.create_database("race"))
    starting = threading.Barrier(4)
    failures: list[BaseException] = []

    def start() -> None:
        starting.wait()
        try:
            migrate(url)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with postgres.connect(str(make_url(url).database)) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (newest_revision(),)
        ]
        # the migration lock is a session lock: nobody holds it once the servers are up
        held = connection.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()
        assert held == (0,)


@pytest.mark.parametrize(
    "given",
    ["postgresql://u:p@db.example/moorage", "postgres://u:p@db.example/moorage"],
)
def test_postgresql_urls_use_psycopg_3(given: str) -> None:
    url = engine_url(given)
    assert (url.drivername, url.host, url.database) == ("postgresql+psycopg", "db.example", "moorage")
    assert engine_url("postgresql+psycopg://u@h/d").drivername == "postgresql+psycopg"


def test_postgresql_engines_check_connections_and_outnumber_the_store_threads() -> None:
    engine = make_engine(engine_url("postgresql://u:p@db.example/moorage"))
    try:
        assert engine.pool.size() >= STORE_THREADS + 2  # type: ignore[attr-defined]
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        assert engine.dialect.create_connect_args(engine.url)[1]["password"] == "p"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("mysql://u:secret@h/d", "unsupported database 'mysql': use postgresql://"),
        ("not a url", "the database URL is not a URL"),
    ],
)
def test_urls_the_store_cannot_use_are_refused_in_one_line(given: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as refused:
        engine_url(given)
    assert "secret" not in str(refused.value) and "\n" not in str(refused.value)


def test_a_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_db.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(StoreError) as refused:
        engine_url("postgresql://u@h/d")
    assert str(refused.value) == "PostgreSQL needs the psycopg driver: pip install 'moorage[postgres]'"
