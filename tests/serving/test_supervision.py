"""The instance main keeps its workers alive and stops cleanly."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.processes import running

from .conftest import StartInstance
from .support import model_dir

MODEL = "def model_fn(model_dir):\n    return len\n"


def test_killed_worker_is_replaced(tmp_path: Path, start_instance: StartInstance) -> None:
    instance = start_instance(model_dir(tmp_path, MODEL), workers=2)
    info = instance.wait_ready()
    old = info["workers"][1]["pid"]
    assert instance.invoke(b"[1, 2]", worker=1, content_type="application/json").json() == 2
    os.kill(old, signal.SIGKILL)
    new_info = instance.wait_info(lambda info: info["workers"][1]["pid"] != old)
    assert new_info["workers"][0] == info["workers"][0]
    assert new_info["pid"] == info["pid"]
    instance.drop_connection(1)  # the old connection died with the old worker
    assert instance.invoke(b"[1, 2, 3]", worker=1, content_type="application/json").json() == 3
    assert instance.invoke(b"[1]", worker=0, content_type="application/json").json() == 1
    assert "was killed by SIGKILL" in instance.output()


def test_tcp_workers_keep_their_address_when_replaced(tmp_path: Path, start_instance: StartInstance) -> None:
    """An instance on another machine serves on TCP: each worker its own port on the given address, kept
    by its replacement, so the front door's address for it never goes stale."""
    instance = start_instance(model_dir(tmp_path, MODEL), workers=2, tcp_host="127.0.0.1")
    info = instance.wait_ready()
    addresses = [w["address"] for w in info["workers"]]
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses) and len(set(addresses)) == 2
    assert instance.invoke(b"[1, 2]", worker=1, content_type="application/json").json() == 2
    old = info["workers"][1]["pid"]
    os.kill(old, signal.SIGKILL)
    new_info = instance.wait_info(lambda info: info["workers"][1]["pid"] != old)
    assert [w["address"] for w in new_info["workers"]] == addresses
    instance.drop_connection(1)
    assert instance.invoke(b"[1, 2, 3]", worker=1, content_type="application/json").json() == 3
    instance.stop()
    assert not running(info["pid"])


def test_sigterm_stops_cleanly(tmp_path: Path, start_instance: StartInstance) -> None:
    instance = start_instance(model_dir(tmp_path, MODEL), workers=2)
    info = instance.wait_ready()
    assert instance.request("GET", "/ping").status == 200  # an idle keep-alive connection stays open
    instance.process.send_signal(signal.SIGTERM)
    assert instance.wait_exit() == 0
    assert list(instance.socket_dir.iterdir()) == []
    for worker in info["workers"]:
        assert not running(worker["pid"])


def test_sigterm_lets_the_request_in_progress_finish(tmp_path: Path, start_instance: StartInstance) -> None:
    slow = "import time\n\ndef model_fn(model_dir):\n    return lambda data: time.sleep(0.5) or 'done'\n"
    instance = start_instance(model_dir(tmp_path, slow))
    instance.wait_ready()
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(instance.invoke, b"[]", content_type="application/json")
        time.sleep(0.2)  # the request is inside the handler now
        instance.process.send_signal(signal.SIGTERM)
        assert (reply.result().status, reply.result().json()) == (200, "done")
    assert instance.wait_exit() == 0


def test_workers_die_with_the_main(tmp_path: Path, start_instance: StartInstance) -> None:
    instance = start_instance(model_dir(tmp_path, MODEL), workers=2)
    info = instance.wait_ready()
    instance.process.kill()
    instance.wait_exit()
    deadline = time.monotonic() + 10
    while any(running(w["pid"]) for w in info["workers"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(running(w["pid"]) for w in info["workers"])
