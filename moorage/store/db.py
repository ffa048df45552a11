"""Opening the state store: engine, schema migration (Alembic) and short-lived sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

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


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (a no-op when it already is)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


def open_store(state_dir: Path, url: str | None = None) -> Store:
    """Open (and migrate) the store; SQLite in `state_dir` unless a database URL is given."""
    state_dir.mkdir(parents=True, exist_ok=True)
    url = url or database_url(state_dir)
    migrate(url)
    engine = create_engine(url, connect_args={"check_same_thread": False} if url.startswith("sqlite") else {})
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return Store(engine)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
