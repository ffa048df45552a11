"""The server with its state in PostgreSQL (`moorage serve --database-url`): the lifecycle through
boto3, state that outlives the server (and its state dir), and a start-up that fails fast and says why
when the database cannot be reached. The database is the test run's real PostgreSQL server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.e2e.conftest import FAST_WAIT, deploy, model_and_config
from tests.e2e.test_recovery import _pid
from tests.support.models import build_model_tar
from tests.support.moorage_server import moorage_server
from tests.support.postgres import PostgresServer, newest_revision
from tests.support.processes import running

# trust authentication ignores it; it is there to show that the server never prints it
PASSWORD = "pw-never-shown-7d1e"


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """A fresh database's URL as a user writes it: postgres:// with a password."""
    url = postgres.url(postgres.create_database("e2e"), password=PASSWORD)
    return url.replace("postgresql://", "postgres://", 1)


def _greeting(smr: Any, name: str) -> str:
    response = smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    return str(json.loads(response["Body"].read())["greeting"])


def test_lifecycle_on_postgresql(tmp_path: Path, database: str, postgres: PostgresServer) -> None:
    model = build_model_tar(tmp_path / "m" / "model.tar.gz").as_uri()
    with moorage_server(tmp_path / "state", database_url=database) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        name = deploy(sm, model, environment={"GREETING_SUFFIX": "!"})
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        assert _greeting(smr, name) == "hello!"

        newer = model_and_config(sm, model, environment={"GREETING_SUFFIX": "?"})
        sm.update_endpoint(EndpointName=name, EndpointConfigName=newer)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointConfigName"] == newer
        assert _greeting(smr, name) == "hello?"
        listed = sm.list_endpoints(NameContains=name)["Endpoints"]
        assert [e["EndpointName"] for e in listed] == [name]

        sm.delete_endpoint(EndpointName=name)
        sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        for config in (name, newer):
            sm.delete_endpoint_config(EndpointConfigName=config)
            sm.delete_model(ModelName=config)
        assert sm.list_models(NameContains=name)["Models"] == []
        output = server.output()
    assert "state in postgres://postgres:***@/" in output
    assert PASSWORD not in output
    # the rows were in PostgreSQL, not in a SQLite file in the state dir
    assert not (tmp_path / "state" / "moorage.db").exists()
    with postgres.connect(str(make_url(database).database)) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (newest_revision(),)
        ]


def test_state_survives_a_restart_on_another_state_dir(tmp_path: Path, database: str) -> None:
    """Everything that matters is in the database: a server started on the same database, even with a
    new state dir, brings the endpoint back as it was."""
    model = build_model_tar(tmp_path / "m" / "model.tar.gz").as_uri()
    with moorage_server(tmp_path / "first", database_url=database) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        name = deploy(sm, model)
        before = _pid(smr, name)
        created = sm.describe_endpoint(EndpointName=name)["CreationTime"]
    assert not running(before)
    with moorage_server(tmp_path / "second", database_url=database) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "InService"
        assert described["CreationTime"] == created
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
        assert _pid(smr, name) != before
        assert [m["ModelName"] for m in sm.list_models(NameContains=name)["Models"]] == [name]
        sm.delete_endpoint(EndpointName=name)
        sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)


def test_an_unreachable_database_fails_start_up_in_seconds_naming_the_host(tmp_path: Path) -> None:
    """A port that accepts connections and never answers: the connect timeout ends the wait."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "moorage",
                "serve",
                "--no-s3",
                "--port",
                "0",
                "--state-dir",
                str(tmp_path / "state"),
                "--database-url",
                f"postgresql://moorage:{PASSWORD}@127.0.0.1:{port}/moorage",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert finished.returncode == 2, finished.stderr
    assert elapsed < 20
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith(f"moorage serve: cannot open the database at 127.0.0.1:{port}/moorage: ")
    assert PASSWORD not in finished.stdout + finished.stderr
