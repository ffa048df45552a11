"""A slow database delays the control-plane calls that need it, never the invocations: the server's store
work runs on its own threads, off the event loop that carries requests (Store.run).

The server keeps its state in a real PostgreSQL reached through a proxy that holds every query for
200 ms, as a remote or overloaded database would. While control-plane calls keep the store busy, each of
them waiting at least one such round trip, invocations on the same port go on at their usual latency."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.conftest import deploy
from tests.support.latency_proxy import latency_proxy
from tests.support.moorage_server import moorage_server
from tests.support.postgres import SUPERUSER, PostgresServer

STORE_DELAY = 0.2  # seconds added to every query round trip


def test_a_slow_store_does_not_slow_invocations(
    postgres: PostgresServer, tmp_path: Path, echo_model: str
) -> None:
    database = postgres.create_database("slow")
    with latency_proxy(*postgres.tcp_address) as proxy:
        url = f"postgresql://{SUPERUSER}@127.0.0.1:{proxy.port}/{database}"
        with moorage_server(tmp_path / "state", database_url=url) as server:
            sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
            name = deploy(sm, echo_model)
            invoke = _invoker(smr, name)
            invoke()  # connections warm

            proxy.delay = STORE_DELAY
            busy = threading.Event()
            stop = threading.Event()
            control_seconds: list[float] = []

            def control_plane() -> None:
                client = server.client("sagemaker")
                while not stop.is_set():
                    started = time.perf_counter()
                    client.describe_endpoint(EndpointName=name)
                    client.list_endpoints()
                    control_seconds.append(time.perf_counter() - started)
                    busy.set()

            callers = [threading.Thread(target=control_plane) for _ in range(3)]
            for caller in callers:
                caller.start()
            try:
                assert busy.wait(30), "no control-plane call finished while the store was slow"
                invocation_seconds = [invoke() for _ in range(80)]
            finally:
                stop.set()
                for caller in callers:
                    caller.join(30)
                proxy.delay = 0.0

    # the store really was slow: every control-plane call waited for it
    assert len(control_seconds) >= 3
    assert min(control_seconds) >= STORE_DELAY
    # ...and the invocations, served meanwhile on the same loop, did not wait for it
    assert statistics.median(invocation_seconds) < STORE_DELAY / 4, invocation_seconds


def _invoker(smr: Any, name: str) -> Any:
    def invoke() -> float:
        started = time.perf_counter()
        reply = smr.invoke_endpoint(EndpointName=name, Body=b'{"x": 1}', ContentType="application/json")
        reply["Body"].read()
        return time.perf_counter() - started

    return invoke
