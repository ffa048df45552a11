"""A real PostgreSQL server for tests: the binaries the pgserver wheel ships, started once per run.

It listens on a Unix socket in its own directory and on 127.0.0.1 (a free port), nowhere else; trust
authentication, so any password in a URL is accepted and ignored (tests use one to check it is never
shown). Each test gets a database of its own (`create_database`), so no test sees another's rows. As
root (CI), PostgreSQL runs as an unprivileged system user, which it insists on.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from moorage.lifeline import lifeline_argv
from tests.support.moorage_server import free_port

SUPERUSER = "postgres"
# the system user PostgreSQL runs as when the tests run as root (pgserver's own name for it)
_SYSTEM_USER = "pgserver"
# a Unix socket path must fit in sun_path (108 bytes), ".s.PGSQL.<port>" included
_SOCKET_PATH_MAX = 100


def _binaries() -> Path:
    """pgserver's bin directory, found without importing pgserver (whose import sets up its own
    server management, which these tests do not use)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PostgreSQL tests need pgserver: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class PostgresServer:
    """A running server: where it listens and how to make databases on it."""

    data_dir: Path
    socket_dir: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A `postgresql://` URL (as a user gives `moorage serve --database-url`) over the Unix socket."""
        secret = f":{password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@/{database}?host={self.socket_dir}&port={self.port}"

    def tcp_url(self, database: str = "postgres", *, password: str | None = None) -> str:
        """A `postgresql://` URL to the same server over TCP on 127.0.0.1 (host and port in the URL),
        for tests that put something between the server and its clients (a proxy)."""
        secret = f":{password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@127.0.0.1:{self.port}/{database}"

    @property
    def tcp_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def connect(self, database: str = "postgres", **options: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=database, **options
        )

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database with a unique name; returns the name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}".lower()
        with self.connect(autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _system_user() -> pwd.struct_passwd | None:
    """None when the tests do not run as root (PostgreSQL then runs as the tests' own user)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(_SYSTEM_USER)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(_SYSTEM_USER)


def _let_traverse(path: Path) -> None:
    """Let another user reach `path` (search permission on each parent; nothing becomes readable)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _owned_dir(path: Path, user: pwd.struct_passwd | None) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
        _let_traverse(path)
    return path


@contextlib.contextmanager
def postgres_server(root: Path, startup_timeout: float = 60) -> Iterator[PostgresServer]:
    """initdb into `root`/data and run PostgreSQL until the block ends."""
    bin_dir = _binaries()
    user = _system_user()
    run_as: dict[str, Any] = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    data_dir = _owned_dir(root / "data", user)
    socket_dir = root / "run"
    created_socket_dir: Path | None = None
    if len(str(socket_dir)) > _SOCKET_PATH_MAX - 20:
        socket_dir = created_socket_dir = Path(tempfile.mkdtemp(prefix="moorage-pg-"))
    _owned_dir(socket_dir, user)
    log_path = root / "postgres.log"
    subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        **run_as,
    )
    port = free_port()
    settings = {
        "listen_addresses": "127.0.0.1",  # TCP on loopback only; the socket is in socket_dir
        "port": str(port),
        "unix_socket_directories": str(socket_dir),
        "max_connections": "200",  # several servers' pools at once
        "fsync": "off",  # test data: durability across a crash of the machine is not needed
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
    }
    command = [str(bin_dir / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    with open(log_path, "wb") as log:
        if user is not None:
            os.chown(log_path, user.pw_uid, user.pw_gid)
        process = subprocess.Popen(
            _tied_to_us(command, user),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )
    server = PostgresServer(data_dir, socket_dir, port, log_path, process)
    try:
        _wait_until_ready(server, startup_timeout)
        yield server
    finally:
        _stop(process)
        if created_socket_dir is not None:
            shutil.rmtree(created_socket_dir, ignore_errors=True)


def _tied_to_us(command: list[str], user: pwd.struct_passwd | None) -> list[str]:
    """`command` made to stop when the test run dies: moorage's lifeline prelude, or, where PostgreSQL
    runs as another user who cannot run this Python, util-linux's setpriv."""
    if user is None:
        return lifeline_argv(command, oom_first=False)
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *command] if setpriv else command


def _wait_until_ready(server: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start-up:\n{server.output()}")
        try:
            with server.connect(connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start in {timeout} s:\n{server.output()}") from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: running sessions are ended), then SIGKILL if it takes too long."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def newest_revision() -> str:
    """The schema revision a migrated database is at (the newest migration's)."""
    from alembic.script import ScriptDirectory

    from moorage.store import db

    return str(ScriptDirectory(str(db._MIGRATIONS)).get_current_head())
