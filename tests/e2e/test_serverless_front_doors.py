"""A serverless endpoint behind two servers (front doors) on one PostgreSQL: the one that does not
reconcile admits, limits and holds requests as the other does, its requests start the instance (a cold
start carried out by the reconciling server), and its traffic keeps the instance from scaling to zero."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.postgres import PostgresServer
from tests.support.serverless import serverless_endpoint

IDLE_SECONDS = 4.0

INFERENCE = """
import json, os

def model_fn(model_dir):
    return {}

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return {"main": os.getppid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture
def front_doors(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    database = postgres.url(postgres.create_database("serverless"))
    env = {
        "MOORAGE_ROUTE_SYNC_SECONDS": "0.2",
        "MOORAGE_LEADER_RETRY_SECONDS": "0.5",
        "MOORAGE_SERVERLESS_IDLE_SECONDS": str(IDLE_SECONDS),
    }
    with ExitStack() as servers:
        first = servers.enter_context(moorage_server(tmp_path / "a", env=env, database_url=database))
        second = servers.enter_context(moorage_server(tmp_path / "b", env=env, database_url=database))
        yield first, second  # the first started first: it reconciles


def _invoke(server: RunningServer, name: str, body: bytes = b"{}") -> dict[str, Any]:
    smr = server.client("sagemaker-runtime")
    deadline = time.monotonic() + 30
    while True:  # until the route reached this server
        try:
            reply = smr.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
            return dict(json.loads(reply["Body"].read()))
        except smr.exceptions.ValidationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _log(server: RunningServer, name: str) -> str:
    path = server.state_dir / "logs" / f"{name}.log"
    return path.read_text() if path.exists() else ""


def test_the_server_that_does_not_reconcile_serves_a_serverless_endpoint(
    front_doors: tuple[RunningServer, RunningServer], tmp_path: Path
) -> None:
    leader, follower = front_doors
    model_url = build_model_tar(tmp_path / "m" / "model.tar.gz", INFERENCE).as_uri()
    name = serverless_endpoint(leader.client("sagemaker"), model_url, max_concurrency=1)
    assert "arrived at zero instances" not in _log(leader, name)

    # the serverless payload limit holds there too (413, not a wait for a worker)
    with pytest.raises(ClientError) as caught:
        _invoke(follower, name, b"0" * (4 * 1024 * 1024 + 1))
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413

    # a request at zero instances, through the follower: the reconciling server starts one
    main = _invoke(follower, name)["main"]
    assert "a request arrived at zero instances" in _log(leader, name)

    # traffic through the follower alone keeps the instance: more than the idle period of it
    until = time.monotonic() + 2 * IDLE_SECONDS
    while time.monotonic() < until:
        assert _invoke(follower, name)["main"] == main
        time.sleep(IDLE_SECONDS / 4)
    assert "scaling to zero" not in _log(leader, name)

    # once no server sees requests, it scales to zero
    deadline = time.monotonic() + 60
    while "scaling to zero" not in _log(leader, name):
        assert time.monotonic() < deadline, "the idle instance never stopped"
        time.sleep(0.2)
