"""Opening the state store: engine, schema migration (Alembic) and short-lived sessions."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

_MIGRATIONS = Path(__file__).parent / "migrations"
# threads that run store work for the event loop: enough for a few control-plane calls at once on a remote
# database, while the loop itself never waits on one
STORE_THREADS = 4

P = ParamSpec("P")
T = TypeVar("T")


class Store:
    """The single source of truth: every state change is written here before it is acted on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._threads = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="moorage-store")

    @property
    def shared(self) -> bool:
        """Whether other servers may use the same database (PostgreSQL), or it is this server's own."""
        return self.engine.dialect.name != "sqlite"

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work` (which uses `session()`) on the store's threads. Code on the event loop reaches the
        store only this way, so a slow or remote database delays the call that needs it, never the
        invocations the same loop carries."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, partial(work, *args, **kwargs))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self.engine.dispose()


def database_url(state_dir: Path) -> str:
    return f"sqlite:///{(state_dir / 'moorage.db').resolve()}"


class StoreError(Exception):
    """The store cannot be opened: a URL it cannot use, a missing driver, an unreachable database. The
    message is one line for the user and never holds a password."""


# PostgreSQL: how long one connection attempt may take, so an unreachable database fails start-up in
# seconds; connections beyond STORE_THREADS are for the reconciler and the scaling engine
PG_CONNECT_TIMEOUT_SECONDS = 5
PG_POOL_SIZE = STORE_THREADS + 4
# the key of the session-level advisory lock that lets one server at a time migrate a shared database
_MIGRATION_LOCK = 0x6D6F6F72  # "moor"
_POSTGRES_SCHEMES = ("postgresql", "postgres")


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL for a `sqlite://` or `postgresql://` (`postgres://`) URL; PostgreSQL goes
    through psycopg 3 unless the URL names a driver itself."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError("the database URL is not a URL (sqlite:///PATH or postgresql://…)") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        return parsed
    if backend not in _POSTGRES_SCHEMES:
        raise StoreError(f"unsupported database {backend!r}: use postgresql://… (or sqlite:///PATH)")
    driver = driver or "psycopg"
    if driver == "psycopg" and importlib.util.find_spec("psycopg") is None:
        raise StoreError("PostgreSQL needs the psycopg driver: pip install 'moorage[postgres]'")
    return parsed.set(drivername=f"postgresql+{driver}")


def describe_url(url: str | URL) -> str:
    """The URL as it may be shown or logged: no password."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "(not a URL)"
    return parsed.render_as_string(hide_password=True)


def _where(url: URL) -> str:
    """The database a message names: host, port and database, never the user's password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    host = url.host or str(url.query.get("host") or "the local socket")
    return f"{host}{f':{url.port}' if url.port else ''}/{url.database or ''}"


def make_engine(url: URL, **options: object) -> Engine:
    """An engine with the options each database needs: SQLite shared across the store's threads; for
    PostgreSQL a connect timeout, a pool larger than the store's threads, and connections checked before
    use (a database restart or a dropped idle connection costs a reconnect, not a failed call)."""
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False}, **options)  # type: ignore[arg-type]
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, object] = {
        "application_name": "moorage",
        # a peer that vanishes (a machine off the network) is noticed in ~15 s, not the OS's 2 hours:
        # the lead's lock goes with its connection (moorage/control/leadership.py)
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 5,
    }
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_SECONDS
    if options.get("poolclass") is None:
        options = {"pool_size": PG_POOL_SIZE, "max_overflow": 4, "pool_timeout": 30, **options}
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, **options)  # type: ignore[arg-type]


def migrate(url: str | URL) -> None:
    """Bring the schema to the newest revision (a no-op when it already is). On PostgreSQL several
    servers may start at once against one database: each holds an advisory lock on the connection
    Alembic migrates with, so one migrates and the others then find the schema current."""
    parsed = engine_url(url) if isinstance(url, str) else url
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    engine = make_engine(parsed, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            config.attributes["connection"] = connection
            if parsed.get_backend_name() == "postgresql":
                with _migration_lock(connection):
                    command.upgrade(config, "head")
            else:
                command.upgrade(config, "head")
    except DBAPIError as error:
        raise StoreError(f"cannot open the database at {_where(parsed)}: {_reason(error, parsed)}") from None
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(connection: Connection) -> Iterator[None]:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
    connection.commit()  # the lock is the session's; Alembic runs its own transaction on this connection
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
        connection.commit()


def _reason(error: DBAPIError, url: URL) -> str:
    """The driver's first line, without the password should the driver ever echo it."""
    lines = [line.strip() for line in str(error.orig).splitlines() if line.strip()]
    reason = lines[0] if lines else type(error.orig).__name__
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


def open_store(state_dir: Path, url: str | None = None) -> Store:
    """Open (and migrate) the store; SQLite in `state_dir` unless a database URL is given. A URL the
    store cannot use, a missing driver or an unreachable database raise StoreError."""
    state_dir.mkdir(parents=True, exist_ok=True)
    parsed = engine_url(url or database_url(state_dir))
    migrate(parsed)
    return Store(make_engine(parsed))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before it returns (an accepted async request survives a power cut, not
    # only a crash); group commits keep that to one sync per batch (docs/async.md)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
