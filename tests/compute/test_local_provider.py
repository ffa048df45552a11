"""LocalProvider: start() hands back an instance only when every worker answers, and cleans up otherwise."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moorage.compute.base import InstanceSpec, InstanceStartError
from moorage.compute.local import LocalInstance, LocalProvider
from moorage.dataplane.connection import WorkerClient, WorkerLost, WorkerUnavailable
from tests.support.processes import running

ECHO = """
    import json
    import os

    def model_fn(model_dir):
        return {"greeting": os.environ.get("GREETING", "hello")}

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, model):
        return {"greeting": model["greeting"], "echo": data, "pid": os.getpid()}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short directory for worker sockets (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mlp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _spec(
    tmp_path: Path, code: str, *, workers: int = 1, startup_timeout: float = 30.0, **env: str
) -> InstanceSpec:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text(textwrap.dedent(code))
    return InstanceSpec(
        instance_id="i-test",
        endpoint_name="ep",
        variant_name="AllTraffic",
        model_dir=model,
        python=sys.executable,
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **env},
        log_path=tmp_path / "instance.log",
        startup_timeout=startup_timeout,
    )


def _invocation(data: Any) -> bytes:
    body = json.dumps(data).encode()
    return (
        b"POST /invocations HTTP/1.1\r\nhost: instance\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


async def _call(client: WorkerClient, data: Any) -> dict[str, Any]:
    reply = await client.request(_invocation(data), timeout=10)
    assert reply.status == 200, reply.body
    result: dict[str, Any] = json.loads(reply.body)
    return result


def test_start_returns_answering_workers_and_stop_ends_every_process(tmp_path: Path, run_dir: Path) -> None:
    """start() returns one address per worker, each answering at once; stop() leaves no process behind."""

    async def scenario() -> tuple[LocalInstance, list[dict[str, Any]]]:
        instance = await LocalProvider(run_dir).start(_spec(tmp_path, ECHO, workers=2, GREETING="ahoy"))
        try:
            assert [w.index for w in instance.workers] == [0, 1]
            clients = [WorkerClient(w.address) for w in instance.workers]
            replies = [await _call(client, {"n": i}) for i, client in enumerate(clients)]
            for client in clients:
                client.close()
        finally:
            await instance.stop(grace=5)
        return instance, replies

    instance, replies = asyncio.run(scenario())
    assert [r["echo"] for r in replies] == [{"n": 0}, {"n": 1}]
    assert {r["greeting"] for r in replies} == {"ahoy"}  # the spec's environment reaches model_fn
    pids = {instance.process.pid, *(r["pid"] for r in replies)}
    assert len(pids) == 3  # a main and two distinct worker processes
    assert instance.process.returncode is not None
    assert not [pid for pid in pids if running(pid)]
    assert not instance.socket_dir.exists()


def test_failing_model_fn_is_start_error_with_the_reason(tmp_path: Path, run_dir: Path) -> None:
    """model_fn raising: InstanceStartError naming the hook, the error and the line; nothing left behind."""
    pid_file = tmp_path / "main.pid"
    code = f"""
        import os

        def model_fn(model_dir):
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            raise ValueError("weights.bin is missing")
    """

    async def scenario() -> None:
        await LocalProvider(run_dir).start(_spec(tmp_path, code))

    with pytest.raises(InstanceStartError) as caught:
        asyncio.run(scenario())
    reason = str(caught.value)
    assert "model_fn raised ValueError: weights.bin is missing" in reason
    assert "inference.py line 6" in reason
    assert not running(int(pid_file.read_text()))
    assert not (run_dir / "i-test").exists()
    assert "weights.bin is missing" in (tmp_path / "instance.log").read_text()


def test_exit_before_ready_is_start_error(tmp_path: Path, run_dir: Path) -> None:
    """An instance process that exits while loading (no failure.json) fails start() with its exit status."""
    code = """
        import os

        def model_fn(model_dir):
            os._exit(5)
    """

    async def scenario() -> None:
        await LocalProvider(run_dir).start(_spec(tmp_path, code))

    with pytest.raises(InstanceStartError, match="exited with status 5"):
        asyncio.run(scenario())
    assert not (run_dir / "i-test").exists()


def test_startup_timeout_is_start_error_and_kills_the_instance(tmp_path: Path, run_dir: Path) -> None:
    """A model_fn still running at the startup timeout fails start(), and the process is stopped."""
    pid_file = tmp_path / "main.pid"
    code = f"""
        import os
        import time

        def model_fn(model_dir):
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(120)
    """

    async def scenario() -> None:
        await LocalProvider(run_dir).start(_spec(tmp_path, code, startup_timeout=1.0))

    bound = r"ContainerStartupHealthCheckTimeoutInSeconds \(1 s\) passed while the instance was still loading"
    with pytest.raises(InstanceStartError, match=bound):
        asyncio.run(scenario())
    assert not running(int(pid_file.read_text()))
    assert not (run_dir / "i-test").exists()


def test_killed_worker_is_reforked_on_the_same_socket(tmp_path: Path, run_dir: Path) -> None:
    """kill_worker ends that worker; the instance re-forks it and the same address serves again."""

    async def scenario() -> tuple[int, int]:
        instance = await LocalProvider(run_dir).start(_spec(tmp_path, ECHO, workers=1))
        client = WorkerClient(instance.workers[0].address)
        try:
            before = (await _call(client, {}))["pid"]
            gone = asyncio.Event()
            instance.kill_worker(0, gone.set)
            await asyncio.wait_for(gone.wait(), 15)  # told once the process has exited ...
            assert not running(before)
            no_such = asyncio.Event()
            instance.kill_worker(7, no_such.set)  # no such worker: nothing to kill, told at once
            assert no_such.is_set()
            deadline = time.monotonic() + 15
            while True:
                try:
                    after = (await _call(client, {}))["pid"]
                    break
                except (WorkerUnavailable, WorkerLost):
                    assert time.monotonic() < deadline, "the worker was not replaced"
                    await asyncio.sleep(0.05)
            assert instance.process.returncode is None  # the instance itself kept running
        finally:
            client.close()
            await instance.stop(grace=5)
        return before, after

    before, after = asyncio.run(scenario())
    assert before != after
    assert not running(before) and not running(after)


def test_stop_after_the_instance_died(tmp_path: Path, run_dir: Path) -> None:
    """wait() reports how the instance ended; stop() afterwards still succeeds and leaves nothing running."""

    async def scenario() -> tuple[int, int]:
        instance = await LocalProvider(run_dir).start(_spec(tmp_path, ECHO, workers=1))
        client = WorkerClient(instance.workers[0].address)
        worker_pid = (await _call(client, {}))["pid"]
        client.close()
        instance.process.kill()
        status = await asyncio.wait_for(instance.wait(), 10)
        await instance.stop(grace=5)
        assert not instance.socket_dir.exists()
        return status, worker_pid

    status, worker_pid = asyncio.run(scenario())
    assert status == -9
    deadline = time.monotonic() + 10
    while running(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not running(worker_pid)


def test_leftover_state_files_do_not_decide_start(tmp_path: Path, run_dir: Path) -> None:
    """A failure.json left in the socket directory by an earlier run of the same id is not this run's."""
    old = run_dir / "i-test"
    old.mkdir()
    (old / "failure.json").write_text(json.dumps({"reason": "an earlier run failed"}))

    async def scenario() -> list[int]:
        start = LocalProvider(run_dir).start(_spec(tmp_path, ECHO, startup_timeout=1.0))
        instance = await asyncio.wait_for(start, 3.0)  # the startup timeout, plus room to spare
        await instance.stop(grace=5)
        return [w.index for w in instance.workers]

    assert asyncio.run(scenario()) == [0]
