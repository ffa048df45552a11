"""Run a real `moorage serve` process on a free loopback port for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, service: str = "sagemaker", **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-west-2",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=90, **config),
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moorage serve exited early:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"moorage serve did not come up in {timeout} s:\n{log_path.read_text(errors='replace')}"
    )


@contextmanager
def moorage_server(
    state_dir: Path,
    env: dict[str, str] | None = None,
    startup_timeout: float = 120,
    args: Sequence[str] = ("--no-s3",),
    database_url: str | None = None,
) -> Iterator[RunningServer]:
    """Start the server (restarting on the same state dir is just calling this again). `args` are
    more `moorage serve` flags: by default no S3 on the port, so most tests start no embedded store;
    pass ``args=()`` for the default server. `database_url` keeps the state there (`--database-url`)
    instead of SQLite in the state dir."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moorage",
                "serve",
                "--port",
                str(port),
                "--state-dir",
                str(state_dir),
                *(("--database-url", database_url) if database_url else ()),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = RunningServer(url, state_dir, process, log_path)
    try:
        _wait_until_up(url, process, log_path, startup_timeout)
        yield server
    finally:
        stop_server(server)


def stop_server(server: RunningServer, timeout: float = 30) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
