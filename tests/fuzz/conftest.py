"""One server for the whole fuzzing module: an InService echo endpoint for the runtime fuzzing, a
model whose data is gone, a watcher that keeps making ListEndpoints calls through boto3 in the
background (the server must stay responsive to a well-behaved client however badly the fuzzer treats
it), and the server's memory measured once it is warm."""

from __future__ import annotations

import bisect
import multiprocessing
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.fuzz.strategies import DEAD, ECHO, IMPLEMENTED, OTHER_OPERATIONS, REGION, SAGEMAKER
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

LOOP_PAUSE = 0.05  # s between the watcher's calls
# Nothing a fuzzed model or config names may leave this machine: S3 goes to a port nobody listens on.
NOWHERE = "http://127.0.0.1:9"
SERVER_ENV = {
    "AWS_ENDPOINT_URL": NOWHERE,
    "AWS_ENDPOINT_URL_S3": NOWHERE,
    "AWS_ACCESS_KEY_ID": "fuzz",
    "AWS_SECRET_ACCESS_KEY": "fuzz",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "1",
}


def _control_loop(url: str, stop: Any, results: Any) -> None:
    """The watcher: ListEndpoints through boto3 until `stop` is set, then its record goes to `results`."""
    client = watcher_client(url)
    watch([lambda: client.list_endpoints(MaxResults=10)], stop, results)


def watch(calls: list[Callable[[], Any]], stop: Any, results: Any) -> None:
    """A watcher's loop: `calls` in turn every LOOP_PAUSE until `stop` is set, timing each; then the
    durations, failures and the slowest call go to `results`."""
    durations: list[float] = []
    failures: list[str] = []
    slowest = (0.0, 0.0)  # (seconds, when it started: time.monotonic(), the same clock in every process)
    try:
        while not stop.wait(LOOP_PAUSE):
            started = time.monotonic()
            try:
                calls[len(durations) % len(calls)]()
            except Exception as exc:  # recorded, asserted on at the end of the module
                failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            took = time.monotonic() - started
            durations.append(took)
            slowest = max(slowest, (took, started))
    finally:
        results.put((durations, failures, slowest))


class ControlLoop:
    """A well-behaved boto3 client making ListEndpoints calls in a loop while the fuzzer runs.

    It runs in its own process: in the test process it would share the GIL with hypothesis, whose
    strategy building can hold it for seconds, and would then time the fuzzer instead of the server."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results: Any = context.Queue()
        self._process = context.Process(
            target=_control_loop, args=(url, self._stop, self._results), name="fuzz-control-loop", daemon=True
        )
        self.durations: list[float] = []
        self.failures: list[str] = []
        self.slowest = (0.0, 0.0)
        self._stopped = False

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        """Stops the loop and collects its record (once; later calls do nothing)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        self.durations, self.failures, self.slowest = self._results.get(timeout=60)
        self._process.join(timeout=30)


@dataclass(repr=False)
class FuzzTarget:
    """The server under test and what the module-level checks need about it."""

    server: RunningServer
    port: int
    rss_after_warmup_kib: int
    loop: ControlLoop
    started: float
    not_implemented: frozenset[str]  # the SageMaker operations the server answered 501 at set-up
    # (monotonic time, what) of the latest requests, to say what was going on when the watcher was slow
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=20000))

    def __repr__(self) -> str:
        return f"FuzzTarget({self.server.url})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def sent(self, what: str) -> None:
        self.recent.append((time.monotonic(), what))

    def sent_around(self, moment: float, before: float = 1.0, after: float = 3.0) -> list[str]:
        """What was sent from `before` s ahead of `moment` to `after` s past it, and the nearest sends."""
        times = [t for t, _ in self.recent]
        first = max(0, bisect.bisect_left(times, moment - before) - 2)
        last = bisect.bisect_right(times, moment + after) + 2
        return [f"{t - moment:+.3f} s {what}" for t, what in list(self.recent)[first:last]]

    def alive(self) -> bool:
        return self.server.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.server.output()[-chars:]


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _deploy_fixtures(server: RunningServer, root: Path) -> None:
    """The echo endpoint (InService), and a model whose data is deleted after CreateModel, with a config:
    endpoints the fuzzer creates from it fail fast instead of running anything."""
    sm = server.client("sagemaker")
    echo = build_model_tar(root / "echo" / "model.tar.gz").as_uri()
    role = "arn:aws:iam::123456789012:role/SageMakerRole"
    container = {"Image": "example/image:latest", "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}}
    sm.create_model(
        ModelName=ECHO, ExecutionRoleArn=role, PrimaryContainer={**container, "ModelDataUrl": echo}
    )
    dead = build_model_tar(root / "dead" / "model.tar.gz")
    sm.create_model(
        ModelName=DEAD, ExecutionRoleArn=role, PrimaryContainer={**container, "ModelDataUrl": str(dead)}
    )
    dead.unlink()
    for name in (ECHO, DEAD):
        variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        sm.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[{**variant, "InstanceType": "ml.m5.large"}]
        )
    sm.create_endpoint(EndpointName=ECHO, EndpointConfigName=ECHO)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=ECHO, WaiterConfig={"Delay": 0.2, "MaxAttempts": 600}
    )


def _warm_up(port: int) -> None:
    """Take every path once or a few times, so imports, caches and pools are in place before the memory
    baseline is read: growth after this is what the fuzzing itself costs."""
    requests = []
    for operation in IMPLEMENTED + OTHER_OPERATIONS[:20]:
        for body in (b"{}", b"{", b'{"NextToken": "x"}'):
            requests.append(
                b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.%s\r\nContent-Length: %d\r\n\r\n%s"
                % (operation.encode(), len(body), body)
            )
    for body in (b'{"a": 1}', b"[1]", b"x") * 20:
        requests.append(
            b"POST /endpoints/%s/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (ECHO.encode(), len(body), body)
        )
    requests += [
        b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /endpoints/nope/invocations HTTP/1.1\r\n\r\n",
    ] * 10
    requests += [b"BAD\r\n\r\n"]
    for request in requests:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            if request.startswith(b"BAD"):
                sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data or b"\r\n\r\n" in data:
                    break


def _not_implemented(port: int) -> frozenset[str]:
    """Ask the server which operations it does not serve (its table grows; this list is not kept here)."""
    found = set()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for operation in SAGEMAKER.operation_names:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.%s\r\nContent-Length: 2\r\n\r\n{}"
                % operation.encode()
            )
            status = int(reader.readline().split()[1])
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            if status == 501:
                found.add(operation)
    return frozenset(found)


@pytest.fixture(autouse=True)
def _mark_test_start(request: pytest.FixtureRequest, target: FuzzTarget) -> None:
    """Tests appear in the timeline too, so a slow watcher call can be put in context."""
    target.sent(f"[{request.node.name} starts]")


def watcher_client(url: str) -> Any:
    """A boto3 client that fails instead of waiting or retrying, so the watcher sees every hiccup."""
    config = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=10, connect_timeout=5)
    return boto3.client(
        "sagemaker",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="fuzz",
        aws_secret_access_key="fuzz",
        config=config,
    )


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    root = tmp_path_factory.mktemp("fuzz")
    with moorage_server(root / "state", env=SERVER_ENV) as server:
        port = int(server.url.rsplit(":", 1)[1])
        _deploy_fixtures(server, root)
        _warm_up(port)
        not_implemented = _not_implemented(port)
        baseline = rss_kib(server.process.pid)
        loop = ControlLoop(server.url)
        loop.start()
        try:
            yield FuzzTarget(server, port, baseline, loop, time.monotonic(), not_implemented)
        finally:
            loop.stop()
