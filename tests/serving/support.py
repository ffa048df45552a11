"""Real instances for tests: model directories on disk, `python -m moorage.serving` processes and
HTTP over their Unix sockets."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = response.read()

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


def model_dir(root: Path, code: str | None, program: str = "inference.py", **files: str) -> Path:
    """root/model with code/<program> (unless code is None) and extra files under code/."""
    model = root / "model"
    (model / "code").mkdir(parents=True, exist_ok=True)
    if code is not None:
        (model / "code" / program).write_text(textwrap.dedent(code))
    for name, text in files.items():
        (model / "code" / name).write_text(textwrap.dedent(text))
    return model


class Instance:
    """One `python -m moorage.serving` process with its own short socket directory."""

    def __init__(
        self,
        model: Path,
        env: dict[str, str] | None = None,
        workers: int | None = 1,
        tcp_host: str | None = None,
    ) -> None:
        self.socket_dir = Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
        self.log = self.socket_dir.parent / f"{self.socket_dir.name}.log"
        command = [sys.executable, "-m", "moorage.serving", "--model-dir", str(model)]
        command += ["--socket-dir", str(self.socket_dir)]
        if workers is not None:
            command += ["--workers", str(workers)]
        if tcp_host is not None:
            command += ["--tcp-host", tcp_host]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SAGEMAKER_")}
        environ["PYTHONPATH"] = str(REPO)
        environ.update(env or {})
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=environ, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        self._connections: dict[int, http.client.HTTPConnection] = {}

    @property
    def instance_file(self) -> Path:
        return self.socket_dir / "instance.json"

    @property
    def failure_file(self) -> Path:
        return self.socket_dir / "failure.json"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.instance_file.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"instance exited {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"instance not ready:\n{self.output()}")
            time.sleep(0.01)
        return self.info()

    def info(self) -> dict[str, Any]:
        return json.loads(self.instance_file.read_text())  # type: ignore[no-any-return]

    def wait_info(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Polls instance.json until `predicate` holds."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            info = self.info()
            if predicate(info):
                return info
            time.sleep(0.02)
        raise AssertionError(f"instance.json never matched; last: {self.info()}\n{self.output()}")

    def drop_connection(self, worker: int) -> None:
        connection = self._connections.pop(worker, None)
        if connection is not None:
            connection.close()

    def wait_exit(self, timeout: float = READY_TIMEOUT) -> int:
        return self.process.wait(timeout)

    def failure(self) -> str:
        status = self.wait_exit()
        assert status == 3, self.output()
        assert not self.instance_file.exists()
        return json.loads(self.failure_file.read_text())["reason"]  # type: ignore[no-any-return]

    def request(
        self, method: str, path: str, body: bytes | str | None = None, worker: int = 0, **headers: str
    ) -> Reply:
        """Keeps one connection per worker open across requests, as the front door does."""
        connection = self._connections.get(worker)
        if connection is None:
            address = next(w["address"] for w in self.info()["workers"] if w["index"] == worker)
            host, _, port = address.removeprefix("tcp://").rpartition(":")
            connection = (
                http.client.HTTPConnection(host, int(port), timeout=10.0)
                if address.startswith("tcp://")
                else UnixHTTPConnection(address)
            )
            self._connections[worker] = connection
        names = {k.replace("_", "-"): v for k, v in headers.items()}
        connection.request(method, path, body=body, headers=names)
        return Reply(connection.getresponse())

    def invoke(self, body: bytes | str, worker: int = 0, **headers: str) -> Reply:
        return self.request("POST", "/invocations", body, worker, **headers)

    def stop(self) -> None:
        for connection in self._connections.values():
            connection.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.log.unlink(missing_ok=True)
