"""Opening the state store: engine, schema migration (Alembic) and short-lived sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"


class Store:
    """The single source of truth: every state change is written here before it is acted on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
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
