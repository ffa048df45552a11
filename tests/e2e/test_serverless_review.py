"""Review of serverless endpoints: behaviours that are wrong today (each test fails for the reason in
its docstring)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.serverless import invoke_json, serverless_config, serverless_endpoint

INFERENCE = """
import json, os, sys, time

def model_fn(model_dir):
    time.sleep(float(os.environ.get("LOAD_SLEEP", "0")))
    return {}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    time.sleep(float(data.get("sleep", 0)))
    extra = os.environ.get("EXTRA_DIR", "")
    return {
        "pid": os.getpid(),
        "extra_on_path": bool(extra) and extra in sys.path,
        "hash": hash("moorage-review"),
    }

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), env={"MOORAGE_SERVERLESS_IDLE_SECONDS": "60"}) as s:
        yield s


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("models") / "review" / "model.tar.gz"
    return build_model_tar(path, INFERENCE).as_uri()


def _invoke_in_background(
    smr: Any, name: str, data: dict[str, Any]
) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def call() -> None:
        begun = time.monotonic()
        try:
            outcome["result"] = invoke_json(smr, name, data)
        except ClientError as exc:
            outcome["error"] = exc.response["Error"]
        outcome["elapsed"] = time.monotonic() - begun

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def _wait_for_held(server: RunningServer, name: str) -> None:
    log = server.state_dir / "logs" / f"{name}.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "a request arrived at zero instances" in log.read_text()):
        assert time.monotonic() < deadline, "the request never arrived"
        time.sleep(0.05)


def test_model_environment_python_variables_reach_a_forked_instance(
    sm: Any, smr: Any, model_url: str, tmp_path: Path
) -> None:
    """A model Environment's PYTHONPATH / PYTHONHASHSEED are honoured by a fresh interpreter
    (`python -m moorage.serving` with that env) but not by an instance forked from the zygote, whose
    sys.path and hash seed were fixed when the zygote (with the server's environment) started."""
    extra = tmp_path / "extra"
    extra.mkdir()
    env = {"PYTHONPATH": str(extra), "EXTRA_DIR": str(extra), "PYTHONHASHSEED": "0"}
    name = serverless_endpoint(sm, model_url, environment=env)
    result = invoke_json(smr, name, {})
    expected_hash = subprocess.run(
        [sys.executable, "-c", "print(hash('moorage-review'))"],
        env={"PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert result["extra_on_path"], "the model's PYTHONPATH is not on the forked instance's sys.path"
    assert str(result["hash"]) == expected_hash, "the model's PYTHONHASHSEED is ignored by the fork"


def test_request_held_for_a_cold_start_is_answered_promptly_when_the_endpoint_is_deleted(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    """DeleteEndpoint closes the fleet; a request held for the cold start keeps polling a closed gate
    until the full invocation timeout (here 20 s) and then gets ModelNotReadyException ("still
    starting ... retry shortly") for an endpoint that no longer exists."""
    name = serverless_endpoint(
        sm, model_url, environment={"LOAD_SLEEP": "3", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "20"}
    )
    thread, outcome = _invoke_in_background(smr, name, {})
    _wait_for_held(server, name)
    sm.delete_endpoint(EndpointName=name)
    thread.join(40)
    assert outcome["elapsed"] < 10, outcome
    assert outcome.get("error", {}).get("Code") != "ModelNotReadyException", outcome


def test_request_held_for_a_cold_start_survives_update_endpoint(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    """UpdateEndpoint deploys the new config (a serverless fleet at zero, so at once) and closes the
    old fleet, cancelling its cold start; the request held on the old gate is never moved to the new
    route nor failed: it waits out the whole timeout and gets ModelNotReadyException."""
    env = {"LOAD_SLEEP": "3", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "20"}
    name = serverless_endpoint(sm, model_url, environment=env)
    new_config = serverless_config(sm, model_url, environment=env)
    thread, outcome = _invoke_in_background(smr, name, {})
    _wait_for_held(server, name)
    sm.update_endpoint(EndpointName=name, EndpointConfigName=new_config)
    thread.join(40)
    assert "result" in outcome, outcome
    assert outcome["elapsed"] < 15, outcome


def test_cold_start_counts_against_the_invocation_budget(sm: Any, smr: Any, model_url: str) -> None:
    """docs/serverless.md: a request is held 'within the 60 s invocation budget'. But _ServerlessCall
    holds it up to the full timeout and `_send` then starts a second full timer at the worker, so a
    request can take up to twice the budget (past boto3's default 60 s read timeout, which retries it
    while the first is still running). Here: timeout 4 s, 2.5 s cold start + 2.5 s predict = answered
    after ~5 s instead of a timeout ModelError at 4 s."""
    name = serverless_endpoint(
        sm, model_url, environment={"LOAD_SLEEP": "2.5", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "4"}
    )
    begun = time.monotonic()
    try:
        invoke_json(smr, name, {"sleep": 2.5})
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ModelError"
    assert time.monotonic() - begun < 4.5


OWN_SERVER_RLIMIT = """\
import json, os, resource
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(b"{}")

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(json.dumps({"data_limit": resource.getrlimit(resource.RLIMIT_DATA)[0]}).encode())


ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler).serve_forever()
"""


def test_memory_size_caps_an_image_with_its_own_server(
    server: RunningServer, sm: Any, smr: Any, model_url: str, tmp_path: Path
) -> None:
    """docs/serverless.md: MemorySizeInMB caps the instance's processes. Only moorage.serving's main
    applies it (memory.apply_limit); an image that runs its own server (compute/command.py) is accepted
    as a serverless variant and runs without any cap."""
    from tests.support.images import image_add

    app = tmp_path / "app.py"
    app.write_text(OWN_SERVER_RLIMIT)
    uri = "123456789012.dkr.ecr.us-west-2.amazonaws.com/own-server-rlimit:1"
    image_add(server, uri, "--python", "3.11", "--command", f"python {app}")
    name = serverless_endpoint(sm, model_url, image=uri, max_concurrency=1)
    assert invoke_json(smr, name, {})["data_limit"] == 1024 * 1024 * 1024


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def test_instance_count_autoscaling_of_a_serverless_variant_is_refused(
    server: RunningServer, sm: Any, model_url: str
) -> None:
    """A serverless variant has no instance count (UpdateEndpointWeightsAndCapacities refuses
    DesiredInstanceCount for it), yet RegisterScalableTarget on sagemaker:variant:DesiredInstanceCount
    is accepted (ScalingPort.exists only checks the variant exists), and every scaling decision then
    fails in change_capacity ("Variant ... is serverless") as a failed activity."""
    name = serverless_endpoint(sm, model_url)
    aas = server.client("application-autoscaling")
    with pytest.raises(ClientError) as caught:
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{name}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=1,
            MaxCapacity=2,
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_a_forked_instance_holds_none_of_the_zygotes_descriptors(sm: Any, smr: Any, model_url: str) -> None:
    """serving/zygote.py `_child` closes the listener and the connections it knows of, but not the
    descriptors the zygote inherited from its spawn under uvloop (copies of its stdin, its stdout
    socket to the server and its zygote-*.log), so every forked instance (and each of its workers)
    keeps the zygote's log and stdout socket open."""
    import os

    name = serverless_endpoint(sm, model_url)
    worker = invoke_json(smr, name, {})["pid"]
    targets = []
    for pid in (worker, _ppid(worker)):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    assert not [t for t in targets if "zygote-" in t], targets


RANDOM_INFERENCE = """
import json

def model_fn(model_dir):
    import numpy
    return float(numpy.random.random())

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return {"drawn": model}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def test_forked_instances_do_not_share_a_random_state(tmp_path: Path) -> None:
    """With a preload that imports numpy.random (MOORAGE_ZYGOTE_PRELOAD names it, or a library that
    imports it such as scipy/sklearn/pandas), numpy's global RandomState is seeded once in the zygote
    and every forked instance (every cold start, every endpoint) draws the same sequence; a fresh
    interpreter seeds it from the OS. Python's `random` is reseeded at fork; numpy's is not."""
    model = build_model_tar(tmp_path / "random" / "model.tar.gz", RANDOM_INFERENCE).as_uri()
    with moorage_server(tmp_path / "state", env={"MOORAGE_ZYGOTE_PRELOAD": "numpy,numpy.random"}) as srv:
        sm, smr = srv.client("sagemaker"), srv.client("sagemaker-runtime")
        first, second = serverless_endpoint(sm, model), serverless_endpoint(sm, model)
        assert invoke_json(smr, first, {})["drawn"] != invoke_json(smr, second, {})["drawn"]


def test_a_failed_fork_does_not_take_every_forked_instance_down(sm: Any, smr: Any, model_url: str) -> None:
    """serving/zygote.py `Zygote.serve/_accept` catch nothing around listener.accept() and os.fork():
    one OSError there (EMFILE here; EAGAIN/ENOMEM from fork under memory pressure) ends the zygote,
    and with it (PR_SET_PDEATHSIG, and ForkedProcess._follow's killpg) every running serverless
    instance of every endpoint, not only the one being started."""
    import os
    import resource

    warm = serverless_endpoint(sm, model_url)
    worker = invoke_json(smr, warm, {})["pid"]
    main = _ppid(worker)
    zygote = _ppid(main)
    open_fds = {int(fd) for fd in os.listdir(f"/proc/{zygote}/fd")}
    lowest_free = min(set(range(len(open_fds) + 1)) - open_fds)
    # its next accept() fails with EMFILE
    resource.prlimit(zygote, resource.RLIMIT_NOFILE, (lowest_free, lowest_free))
    cold = serverless_endpoint(sm, model_url)
    assert "pid" in invoke_json(smr, cold, {})  # started afresh instead (the fallback works)
    time.sleep(1)
    assert _alive(main), "the warm endpoint's instance died with the zygote"
    assert _ppid(invoke_json(smr, warm, {})["pid"]) == main  # the same instance (either of its workers)


def test_a_zygote_that_cannot_start_is_not_started_again_for_every_cold_start(
    tmp_path: Path, model_url: str
) -> None:
    """compute/zygote.py `Zygotes.spawn`: a zygote that failed to start is dropped (`_zygotes.pop`) and
    the next spawn's `prewarm` starts another one and waits for it (up to 60 s) before falling back. A
    zygote that fails deterministically (a preload that raises or prints to stdout) thus costs every
    cold start an extra interpreter start plus the preload, in series, before the fresh start."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "review_broken.py").write_text("raise RuntimeError('broken preload')\n")
    env = {"MOORAGE_ZYGOTE_PRELOAD": "review_broken", "PYTHONPATH": str(lib)}
    with moorage_server(tmp_path / "state", env=env) as srv:
        sm, smr = srv.client("sagemaker"), srv.client("sagemaker-runtime")
        for _ in range(3):
            invoke_json(smr, serverless_endpoint(sm, model_url), {})
        attempts = srv.output().count("did not start")
    assert attempts <= 1, f"{attempts} zygote start attempts for 3 cold starts"
