"""Shared fixtures: a real S3-compatible server (SeaweedFS) for code that talks to S3, and a real
PostgreSQL server for the store's second database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, postgres_server
from tests.support.ray_cluster import RayCluster, ray_cluster
from tests.support.seaweed import SeaweedS3, seaweed_s3

# Tests talk to loopback only. A boto3 client made with no credentials configured (the SageMaker SDK makes
# some at import) would otherwise fall through the credential chain to the instance metadata address;
# this stops the chain short of it for this process and every one it starts.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One SeaweedFS server for the whole session (started on first use)."""
    with seaweed_s3() as server:
        yield server


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    """Point boto3 in the code under test at the test server, isolated from any user AWS config."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_server


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> str:
    """A new, empty bucket on the test server."""
    return s3_server.create_bucket()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (started on first use, stopped at the end); on a
    Unix socket and 127.0.0.1 only. `postgres.tcp_url(database)` reaches it over TCP loopback."""
    with postgres_server(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database of this test's own on the session's PostgreSQL server."""
    return postgres.url(postgres.create_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store-level test twice: on SQLite in a state dir, and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        return f"sqlite:///{state / 'moorage.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def ray_nodes() -> Iterator[RayCluster]:
    """One real two-node Ray cluster for the whole run, on 127.0.0.2 and 127.0.0.3 (started on first use)."""
    with ray_cluster() as cluster:
        yield cluster
