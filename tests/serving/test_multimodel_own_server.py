"""A multi-model instance whose image runs its own multi-model server (MOORAGE_MME_COMMAND): the instance
starts that one server and drives it through the container-side multi-model API, as SageMaker drives an
MMS container: POST /models with the unpacked directory under an opaque name, invoke, DELETE to unload
(on eviction, on 507, with caching disabled), and the instance ends when the server does."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.serving.multimodel_support import (
    MultiModelInstance,
    StartMultiModel,
    eventually,
    pid_gone,
    timings,
)
from tests.support.models import build_model_tar

# An MMS-style server: SAGEMAKER_BIND_TO_PORT, GET /ping, the /models API; a model is the directory
# POSTed as url, whose model.txt is its answer and size.txt the bytes its worker process holds (MMS runs
# a worker per model); more than $MMS_MAX_MODELS loaded answers 507. Every request is journalled to
# $MMS_JOURNAL as a JSON line.
MMS_SERVER = r"""
import json, os, subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

assert sys.argv[1:] == ["serve"], sys.argv
MAX_MODELS = int(os.environ.get("MMS_MAX_MODELS", "100"))
models = {}
lock = threading.Lock()
WORKER = "import sys, time; blob = b'\\x01' * int(sys.argv[1]); print('ready', flush=True); time.sleep(1e9)"


def start_worker(size):
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(size)], stdout=subprocess.PIPE)
    assert worker.stdout.readline() == b"ready\n"
    return worker


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def journal(self, body):
        entry = {"method": self.command, "path": self.path, "body": body.decode(),
                 "target": self.headers.get("x-amzn-sagemaker-target-model")}
        with lock, open(os.environ["MMS_JOURNAL"], "a") as journal:
            journal.write(json.dumps(entry) + "\n")

    def route(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/ping":
            return self.answer(200, {"status": "Healthy"})
        self.journal(body)
        parts = self.path.strip("/").split("/")
        if parts == ["models"] and self.command == "POST":
            request = json.loads(body)
            name, url = request["model_name"], request["url"]
            with lock:
                if name in models:
                    return self.answer(409, {"message": f"Model {name} is already registered."})
                if len(models) >= MAX_MODELS:
                    return self.answer(507, {"message": "Memory exhausted"})
                if os.path.exists(os.path.join(url, "fail.txt")):
                    return self.answer(500, {"message": open(os.path.join(url, "fail.txt")).read()})
                size = int(open(os.path.join(url, "size.txt")).read())
                text = open(os.path.join(url, "model.txt")).read()
                models[name] = {"text": text, "worker": start_worker(size)}
            return self.answer(200, {"status": f"Model \"{name}\" registered"})
        if parts == ["models"]:
            return self.answer(200, {"models": [{"modelName": n} for n in sorted(models)]})
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "invoke" and self.command == "POST":
            model = models.get(parts[1])
            if model is None:
                return self.answer(404, {"message": f"Model not found: {parts[1]}"})
            time.sleep(json.loads(body or b"{}").get("sleep", 0))
            return self.answer(200, {"model": model["text"], "name": parts[1], "pid": os.getpid(),
                                     "target": self.headers.get("x-amzn-sagemaker-target-model"),
                                     "echo": json.loads(body or b"null")})
        if len(parts) == 2 and parts[0] == "models":
            with lock:
                model = models.pop(parts[1], None) if self.command == "DELETE" else models.get(parts[1])
            if model is None:
                return self.answer(404, {"message": f"Model not found: {parts[1]}"})
            if self.command == "DELETE":
                model["worker"].kill()
                model["worker"].wait()
            return self.answer(200, {"status": f"Model \"{parts[1]}\" unregistered"})
        return self.answer(404, {"message": "no such route"})

    do_GET = do_POST = do_DELETE = route


ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler).serve_forever()
"""

OPAQUE = re.compile(r"^m[0-9a-f]{16}$")


def _model(models: Path, target: str, text: str, size: int = 0, fail: str | None = None) -> None:
    files = {"model.txt": text, "size.txt": str(size)}
    if fail is not None:
        files["fail.txt"] = fail
    build_model_tar(models / target, files=files)


def _builder(*specs: tuple[str, str, int]) -> Any:
    def build(models: Path) -> None:
        for target, text, size in specs:
            _model(models, target, text, size)

    return build


def _server_env(tmp_path: Path, max_models: int = 100) -> dict[str, str]:
    script = tmp_path / "mms_server.py"
    script.write_text(MMS_SERVER)
    return {
        "MOORAGE_MME_COMMAND": json.dumps(["python", str(script), "serve"]),
        "MMS_JOURNAL": str(tmp_path / "journal.jsonl"),
        "MMS_MAX_MODELS": str(max_models),
    }


def _journal(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _calls(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, path) of the model-API calls, /models listings left out."""
    return [
        (e["method"], e["path"]) for e in _journal(tmp_path) if e["path"] != "/models" or e["method"] != "GET"
    ]


def test_answers_per_target_through_the_servers_model_api(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    build = _builder(("a.tar.gz", "alpha", 0), ("group/b/model.tar.gz", "beta", 32 * 1024**2))
    mme = start_multimodel(build, **_server_env(tmp_path))
    first = mme.invoke("a.tar.gz", {"x": 1})
    assert first.status == 200, first.body
    assert first.json()["model"] == "alpha" and first.json()["echo"] == {"x": 1}
    assert first.json()["target"] == "a.tar.gz"  # the target-model header is passed on
    assert first.headers["x-moorage-model-cache"] == "miss"
    again = mme.invoke("a.tar.gz", {"x": 2})
    assert again.status == 200 and again.headers["x-moorage-model-cache"] == "hit"
    nested = mme.invoke("group/b/model.tar.gz")
    assert nested.status == 200 and nested.json()["model"] == "beta"
    assert first.json()["pid"] == nested.json()["pid"]  # one server hosts both

    loads = [e for e in _journal(tmp_path) if (e["method"], e["path"]) == ("POST", "/models")]
    assert len(loads) == 2
    names = []
    for entry in loads:
        request = json.loads(entry["body"])
        assert OPAQUE.match(request["model_name"]), request
        url = Path(request["url"])  # the unpacked model: a local directory, not the archive or a URI
        assert url.is_absolute() and url.is_dir() and (url / "model.txt").is_file()
        names.append(request["model_name"])
    assert names[0] != names[1]
    assert first.json()["name"] == names[0] and nested.json()["name"] == names[1]
    invokes = [e for e in _journal(tmp_path) if e["path"].endswith("/invoke")]
    assert [e["path"] for e in invokes] == [f"/models/{names[0]}/invoke"] * 2 + [f"/models/{names[1]}/invoke"]

    assert mme.loaded() == ["a.tar.gz", "group/b/model.tar.gz"]
    big = mme.describe("group/b/model.tar.gz")
    assert big["serverModelName"] == names[1]
    assert big["memoryBytes"] >= 32 * 1024**2  # its load's growth of the server's PSS, workers included
    assert len(big["pids"]) == 3  # the server and a worker per model
    assert mme.describe("a.tar.gz")["memoryBytes"] < big["memoryBytes"]


def test_a_load_the_server_refuses_is_reported_and_nothing_stays_loaded(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    mme = start_multimodel(
        lambda models: _model(models, "bad.tar.gz", "x", fail="no weights in this archive"),
        **_server_env(tmp_path),
    )
    failed = mme.invoke("bad.tar.gz")
    assert failed.status == 500 and failed.headers["x-moorage-error"] == "ModelLoadFailed"
    assert "'bad.tar.gz'" in failed.text and "answered POST /models with 500: no weights" in failed.text
    assert mme.loaded() == []


def test_507_unloads_the_least_recently_used_idle_model_and_retries(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    build = _builder(("a.tar.gz", "alpha", 0), ("b.tar.gz", "beta", 0), ("c.tar.gz", "gamma", 0))
    mme = start_multimodel(build, **_server_env(tmp_path, max_models=2))
    for target in ("a.tar.gz", "b.tar.gz", "a.tar.gz"):  # b is now the least recently used
        assert mme.invoke(target).status == 200
    b_name = mme.describe("b.tar.gz")["serverModelName"]
    del_before = len(_calls(tmp_path))
    third = mme.invoke("c.tar.gz")
    assert third.status == 200 and third.json()["model"] == "gamma", third.body
    assert timings(third)["unloads"] == 1
    calls = _calls(tmp_path)[del_before:]
    assert calls[:3] == [("POST", "/models"), ("DELETE", f"/models/{b_name}"), ("POST", "/models")]
    assert mme.loaded() == ["a.tar.gz", "c.tar.gz"]


def test_a_server_full_with_nothing_to_unload_is_insufficient_memory(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    mme = start_multimodel(_builder(("a.tar.gz", "alpha", 0)), **_server_env(tmp_path, max_models=0))
    full = mme.invoke("a.tar.gz")
    assert full.status == 507 and full.headers["x-moorage-error"] == "InsufficientMemory"
    assert "'a.tar.gz'" in full.text and "Memory exhausted" in full.text
    assert mme.loaded() == []


def test_the_memory_budget_unloads_with_delete(start_multimodel: StartMultiModel, tmp_path: Path) -> None:
    size = 48 * 1024**2
    build = _builder(("a.tar.gz", "alpha", size), ("b.tar.gz", "beta", size))
    mme = start_multimodel(build, MOORAGE_MME_MEMORY_BYTES=str(80 * 1024**2), **_server_env(tmp_path))
    assert mme.invoke("a.tar.gz").status == 200
    a_name = mme.describe("a.tar.gz")["serverModelName"]
    second = mme.invoke("b.tar.gz")
    assert second.status == 200 and timings(second)["unloads"] == 1, second.headers
    assert ("DELETE", f"/models/{a_name}") in _calls(tmp_path)
    assert mme.loaded() == ["b.tar.gz"]

    b_name = mme.describe("b.tar.gz")["serverModelName"]
    assert mme.call("DELETE", "/models/b.tar.gz").status == 200  # the instance's own API unloads too
    assert _calls(tmp_path)[-1] == ("DELETE", f"/models/{b_name}")


def test_a_model_that_does_not_answer_in_time_is_unloaded(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    mme = start_multimodel(
        _builder(("a.tar.gz", "alpha", 0)),
        MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS="2",
        **_server_env(tmp_path),
    )
    name = mme.invoke("a.tar.gz").json()["name"]
    timed_out = mme.invoke("a.tar.gz", {"sleep": 30})
    assert timed_out.status == 504 and timed_out.headers["x-moorage-error"] == "ModelTimeout"
    assert ("DELETE", f"/models/{name}") in _calls(tmp_path)
    assert mme.loaded() == []
    assert mme.invoke("a.tar.gz").headers["x-moorage-model-cache"] == "miss"


def test_a_timed_out_model_is_deleted_only_once_its_other_requests_end(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    """The server runs every model: a hung request DELETEs its model, but not under another request."""
    mme = start_multimodel(
        _builder(("a.tar.gz", "alpha", 0)),
        MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS="4",
        **_server_env(tmp_path),
    )
    name = mme.invoke("a.tar.gz").json()["name"]
    replies: dict[str, Any] = {}

    def other() -> None:
        replies["other"] = mme.invoke("a.tar.gz", {"sleep": 3})

    thread = threading.Thread(target=other)
    hung = threading.Thread(target=lambda: replies.update(hung=mme.invoke("a.tar.gz", {"sleep": 30})))
    hung.start()
    eventually(lambda: mme.describe("a.tar.gz")["inFlight"] == 1)
    time.sleep(2)  # the other request is still answering when the hung one times out, within its own 4 s
    thread.start()
    hung.join()
    assert replies["hung"].status == 504 and replies["hung"].headers["x-moorage-error"] == "ModelTimeout"
    assert "once its other requests end" in replies["hung"].text
    if thread.is_alive():  # (it is, unless this machine stalled for a second)
        assert ("DELETE", f"/models/{name}") not in _calls(tmp_path)
    thread.join()
    assert replies["other"].status == 200
    eventually(lambda: ("DELETE", f"/models/{name}") in _calls(tmp_path))
    again = mme.invoke("a.tar.gz")
    assert again.status == 200 and again.headers["x-moorage-model-cache"] == "miss"
    assert again.headers["x-moorage-model-unloaded"].isdigit()  # the DELETE, reported once
    assert "x-moorage-model-unloaded" not in mme.invoke("a.tar.gz").headers


def test_caching_disabled_unloads_after_each_invocation(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    mme = start_multimodel(
        _builder(("a.tar.gz", "alpha", 0)), MOORAGE_MME_CACHING="Disabled", **_server_env(tmp_path)
    )
    reply = mme.invoke("a.tar.gz")
    assert reply.status == 200
    name = reply.json()["name"]
    url = Path(json.loads(_journal(tmp_path)[0]["body"])["url"])
    eventually(lambda: ("DELETE", f"/models/{name}") in _calls(tmp_path))
    eventually(lambda: mme.loaded() == [] and not url.exists())
    assert mme.invoke("a.tar.gz").headers["x-moorage-model-cache"] == "miss"


def test_the_instance_exits_when_its_server_does(start_multimodel: StartMultiModel, tmp_path: Path) -> None:
    mme = start_multimodel(_builder(("a.tar.gz", "alpha", 0)), **_server_env(tmp_path))
    server = mme.invoke("a.tar.gz").json()["pid"]
    pids = mme.describe("a.tar.gz")["pids"]
    assert server in pids and len(pids) == 2
    os.kill(server, signal.SIGKILL)
    assert mme.instance.wait_exit() == 1, mme.output()
    assert "exited with status" in mme.output()
    eventually(lambda: all(pid_gone(pid) for pid in pids))  # its orphaned worker too


def test_sigterm_stops_the_server(start_multimodel: StartMultiModel, tmp_path: Path) -> None:
    mme = start_multimodel(_builder(("a.tar.gz", "alpha", 0)), **_server_env(tmp_path))
    pids = mme.describe("a.tar.gz")["pids"] if mme.invoke("a.tar.gz").status == 200 else []
    assert pids
    mme.instance.process.send_signal(signal.SIGTERM)
    assert mme.instance.wait_exit() == 0, mme.output()
    eventually(lambda: all(pid_gone(pid) for pid in pids))


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ([sys.executable, "-c", "raise SystemExit(4)"], "exited with status 4 before it answered GET /ping"),
        ("serve", "MOORAGE_MME_COMMAND='serve' is not a JSON list"),
    ],
)
def test_a_server_that_cannot_start_fails_the_instance(tmp_path: Path, command: Any, reason: str) -> None:
    (tmp_path / "models").mkdir()
    text = command if isinstance(command, str) else json.dumps(command)
    mme = MultiModelInstance(tmp_path, {"MOORAGE_MME_COMMAND": text})
    try:
        assert reason in mme.instance.failure()
    finally:
        mme.stop()
