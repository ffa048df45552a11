"""Processes are cattle: restarts and killed instances come back without the user doing anything."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from moorage.lifeline import OOM_SCORE_ADJ
from tests.e2e.conftest import FAST_WAIT, deploy
from tests.support.models import build_model_tar
from tests.support.moorage_server import moorage_server
from tests.support.processes import parent_pid, running


def _pid(smr: Any, name: str) -> int:
    response = smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    return int(json.loads(response["Body"].read())["pid"])


def test_restart_brings_endpoints_back(tmp_path: Path) -> None:
    model = build_model_tar(tmp_path / "m" / "model.tar.gz").as_uri()
    state = tmp_path / "state"
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        name = deploy(sm, model)
        before = _pid(smr, name)
        created = sm.describe_endpoint(EndpointName=name)["CreationTime"]
    assert not running(before)
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        described = sm.describe_endpoint(EndpointName=name)
        assert described["EndpointStatus"] == "InService"
        assert described["CreationTime"] == created
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
        after = _pid(smr, name)
        assert after != before
        assert [m["ModelName"] for m in sm.list_models(NameContains=name)["Models"]] == [name]


def test_killed_instance_is_replaced_while_others_serve(sm: Any, smr: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, instances=2)
    pids = {_pid(smr, name) for _ in range(20)}
    assert len(pids) == 2, "least-outstanding routing should reach both instances"
    victim = parent_pid(next(iter(pids)))
    os.kill(victim, signal.SIGKILL)
    ok = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _pid(smr, name)
            ok += 1
        except Exception:
            pass
        counts = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["CurrentInstanceCount"]
        if ok >= 5 and counts == 2 and len({_pid(smr, name) for _ in range(20)} - pids) >= 1:
            break
        time.sleep(0.1)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert ok >= 5
    assert not running(victim)
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)


def test_process_exit_inside_handler_is_contained(sm: Any, smr: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    try:
        smr.invoke_endpoint(EndpointName=name, Body=json.dumps({"exit": 1}), ContentType="application/json")
        raise AssertionError("the request on a dying worker must fail")
    except smr.exceptions.ModelError as error:
        assert error.response["OriginalStatusCode"] == 0
    deadline = time.monotonic() + 30
    while True:
        try:
            _pid(smr, name)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    sm.delete_endpoint(EndpointName=name)


SLOW_MODEL_FN = """
import json, os, time

def model_fn(model_dir):
    time.sleep(float(os.environ.get("LOAD_SECONDS", "0")))
    return {"pid": os.getpid()}

def transform_fn(model, body, content_type, accept):
    return json.dumps({"pid": os.getpid()}), "application/json"
"""


def test_killed_server_leaves_no_instances_and_loses_nothing_accepted(tmp_path: Path) -> None:
    """SIGKILL the front door: its instances exit with it, and on restart the InService endpoint
    serves again and the endpoint that was still Creating finishes creating."""
    model = build_model_tar(tmp_path / "m" / "model.tar.gz", inference=SLOW_MODEL_FN).as_uri()
    state = tmp_path / "state"
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        serving = deploy(sm, model)
        worker = _pid(smr, serving)
        instance = parent_pid(worker)
        creating = deploy(sm, model, environment={"LOAD_SECONDS": "3"}, wait=False)
        assert sm.describe_endpoint(EndpointName=creating)["EndpointStatus"] == "Creating"
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 15
        while (running(worker) or running(instance)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(instance) and not running(worker)
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        assert sm.describe_endpoint(EndpointName=serving)["EndpointStatus"] == "InService"
        assert _pid(smr, serving) != worker
        sm.get_waiter("endpoint_in_service").wait(EndpointName=creating, WaiterConfig=FAST_WAIT)
        assert _pid(smr, creating) > 0


def test_model_processes_are_the_out_of_memory_killers_first_choice(
    sm: Any, smr: Any, echo_model: str, server: Any
) -> None:
    """A leaking model is what the kernel kills when memory runs out, not the server; it is then replaced."""
    name = deploy(sm, echo_model)
    worker = _pid(smr, name)
    for pid in (worker, parent_pid(worker)):
        assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == str(OOM_SCORE_ADJ)
    assert Path(f"/proc/{server.process.pid}/oom_score_adj").read_text().strip() != str(OOM_SCORE_ADJ)
    sm.delete_endpoint(EndpointName=name)


def test_update_accepted_before_a_crash_completes_after_restart(tmp_path: Path) -> None:
    model = build_model_tar(tmp_path / "m" / "model.tar.gz", inference=SLOW_MODEL_FN).as_uri()
    state = tmp_path / "state"
    with moorage_server(state) as server:
        sm = server.client()
        name = deploy(sm, model)
        slow = deploy(sm, model, environment={"LOAD_SECONDS": "5"}, wait=False)  # a config that loads slowly
        sm.update_endpoint(EndpointName=name, EndpointConfigName=slow)
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
        server.process.kill()
        server.process.wait()
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
        assert _pid(smr, name) > 0  # the old configuration serves while the update resumes
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
        assert sm.describe_endpoint(EndpointName=name)["EndpointConfigName"] == slow
