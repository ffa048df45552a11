"""Multi-container models through boto3, where SageMaker's contract is narrower or wider than the first
implementation: hostnames given to only some containers of a pipeline, one container's model server
timeout applied to another container's Direct requests, and a one-container Direct model."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, settled, unique
from tests.e2e.test_pipelines import ROLE, container, create_endpoint
from tests.support.models import ECHO_INFERENCE, build_model_tar
from tests.support.traffic import SteadyTraffic


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_model_tar(tmp_path_factory.mktemp("review") / "model.tar.gz", ECHO_INFERENCE).as_uri()


def test_a_pipeline_with_hostnames_on_some_containers_only_is_refused(sm: Any, echo: str) -> None:
    """ContainerDefinition.ContainerHostname (botocore's documentation of the shape): "If you specify a
    value for the ContainerHostName for any ContainerDefinition that is part of an inference pipeline,
    you must specify a value for the ContainerHostName parameter of every ContainerDefinition in that
    pipeline." """
    with pytest.raises(ClientError) as raised:
        sm.create_model(
            ModelName=unique("mixed"),
            ExecutionRoleArn=ROLE,
            Containers=[container(echo, "pre"), container(echo), container(echo, "post")],
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "ContainerHostname" in raised.value.response["Error"]["Message"]


def test_direct_requests_get_their_own_containers_model_server_timeout(sm: Any, smr: Any, echo: str) -> None:
    """In Direct invocation a request runs in one container only; another container's
    SAGEMAKER_MODEL_SERVER_TIMEOUT (its own model server's setting) must not cut it short. Here `quick`
    sets 2 s and `patient` nothing (60 s): a 3 s request to `patient` is answered."""
    name = create_endpoint(
        sm,
        [container(echo, "quick", SAGEMAKER_MODEL_SERVER_TIMEOUT="2"), container(echo, "patient")],
        mode="Direct",
    )
    try:
        response = smr.invoke_endpoint(
            EndpointName=name,
            Body=json.dumps({"sleep": 3}),
            ContentType="application/json",
            TargetContainerHostname="patient",
        )
        assert json.loads(response["Body"].read())["echo"] == {"sleep": 3}
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_a_direct_model_with_one_container_is_refused_or_served(sm: Any, smr: Any, echo: str) -> None:
    """A model with one entry in Containers and InferenceExecutionConfig Mode Direct: either CreateModel
    refuses it, or the endpoint answers TargetContainerHostname naming that container. Accepting the model
    and then telling the caller the endpoint is not Direct contradicts DescribeModel."""
    try:
        name = create_endpoint(sm, [container(echo, "solo")], mode="Direct")
    except ClientError as exc:  # refused at CreateModel: consistent
        assert exc.response["Error"]["Code"] == "ValidationException"
        return
    try:
        assert sm.describe_model(ModelName=name)["InferenceExecutionConfig"] == {"Mode": "Direct"}
        response = smr.invoke_endpoint(
            EndpointName=name, Body=b"{}", ContentType="application/json", TargetContainerHostname="solo"
        )
        assert json.loads(response["Body"].read())["greeting"] == "hello"
    finally:
        sm.delete_endpoint(EndpointName=name)


def _marked(mark: str) -> dict[int, str]:
    """pid -> MOORAGE_INSTANCE_ID of every live process whose environment carries REVIEW_MARK=`mark`."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":  # exited, not yet reaped
                    continue
        except OSError:
            continue
        if env.get(b"REVIEW_MARK") == mark.encode():
            found[int(entry)] = env.get(b"MOORAGE_INSTANCE_ID", b"").decode()
    return found


def _until(check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_one_container_exiting_replaces_the_whole_instance_and_delete_leaves_no_process(
    sm: Any, smr: Any, echo: str
) -> None:
    """A container's process that exits takes its instance with it: the instance's other containers are
    stopped (no orphans), a whole new instance serves every container, and DeleteEndpoint leaves no
    process of any container behind."""
    mark = unique("mark")
    name = create_endpoint(
        sm, [container(echo, "alpha", REVIEW_MARK=mark), container(echo, "beta", REVIEW_MARK=mark)], "Direct"
    )
    try:
        first = _marked(mark)
        old = {iid.rsplit("-c", 1)[0] for iid in first.values()}
        assert len(old) == 1, first
        [instance] = old
        beta_masters = [p for p, iid in first.items() if iid == f"{instance}-c2" and os.getpgid(p) == p]
        assert beta_masters, first
        os.kill(beta_masters[0], signal.SIGKILL)

        def replaced() -> bool:
            ids = set(_marked(mark).values())
            return not any(i.startswith(instance) for i in ids) and len(ids) == 2

        assert _until(replaced), f"the old instance's containers still run: {_marked(mark)}"
        for hostname in ("alpha", "beta"):
            answer = _until(lambda h=hostname: _try_invoke(smr, name, h), timeout=60)
            assert answer is not None and answer["greeting"] == "hello"
    finally:
        sm.delete_endpoint(EndpointName=name)
    assert _until(lambda: not _marked(mark), timeout=60), f"left running: {_marked(mark)}"


def _try_invoke(smr: Any, name: str, hostname: str) -> dict[str, Any] | None:
    try:
        response = smr.invoke_endpoint(
            EndpointName=name, Body=b"{}", ContentType="application/json", TargetContainerHostname=hostname
        )
    except ClientError:
        return None
    return dict(json.loads(response["Body"].read()))


# each stage sleeps for the seconds its STAGE names in the request, and adds its worker's pid
STAGED = """
import json, os, time

def model_fn(model_dir):
    return os.environ["STAGE"]

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, stage):
    time.sleep(float(data.get(stage, 0)))
    return {**data, "pid_" + stage: os.getpid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def test_a_budget_spent_by_an_earlier_container_does_not_kill_a_later_containers_worker(
    sm: Any, smr: Any, tmp_path: Any
) -> None:
    """The pipeline's 3 s budget runs out while the request is at `second`, which had worked on it for
    about 1 s: the request fails naming `second`, but `second`'s worker is not hung (its own model server
    allows it 60 s) and must not be killed and re-forked (its model reloaded) for `first`'s slowness."""
    staged = build_model_tar(tmp_path / "staged.tar.gz", STAGED).as_uri()
    name = create_endpoint(
        sm,
        [
            container(staged, "first", STAGE="first", SAGEMAKER_MODEL_SERVER_TIMEOUT="3"),
            container(staged, "second", STAGE="second"),
        ],
    )
    try:

        def pids() -> dict[str, Any]:
            response = smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
            return dict(json.loads(response["Body"].read()))

        before = pids()
        with pytest.raises(smr.exceptions.ModelError) as raised:
            smr.invoke_endpoint(
                EndpointName=name, Body=json.dumps({"first": 2, "second": 2}), ContentType="application/json"
            )
        assert "waiting for a response from container second" in raised.value.response["OriginalMessage"]
        after = _until(lambda: _try(pids), timeout=60)
        assert after is not None
        assert after["pid_first"] == before["pid_first"]
        assert after["pid_second"] == before["pid_second"], "second's worker was killed and re-forked"
    finally:
        sm.delete_endpoint(EndpointName=name)


def _try(call: Any) -> Any:
    try:
        return call()
    except ClientError:
        return None


def test_update_from_one_container_to_a_pipeline_and_back_fails_no_request(
    sm: Any, smr: Any, echo: str
) -> None:
    """Blue/green UpdateEndpoint between a single-container model and a two-container pipeline (same
    variant name) while requests keep coming: none fails, and each is answered by one shape or the
    other (a pipeline's answer is the second echo of the first one's)."""
    single = unique("single")
    sm.create_model(ModelName=single, ExecutionRoleArn=ROLE, PrimaryContainer=container(echo))
    pipeline = unique("chain")
    sm.create_model(
        ModelName=pipeline, ExecutionRoleArn=ROLE, Containers=[container(echo, "a"), container(echo, "b")]
    )
    for model in (single, pipeline):
        sm.create_endpoint_config(
            EndpointConfigName=model,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
    name = unique("swap")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=single)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    try:
        with SteadyTraffic(
            smr, name, lambda answer: "pipeline" if "greeting" in answer["echo"] else "single"
        ) as traffic:
            shapes = traffic.answers
            for config in (pipeline, single):
                sm.update_endpoint(EndpointName=name, EndpointConfigName=config)
                time.sleep(0.5)  # UpdateEndpoint answers before the status turns Updating here and on AWS
                sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
                seen = len(shapes)
                _until(lambda seen=seen: len(shapes) > seen + 3, timeout=30)
    finally:
        sm.delete_endpoint(EndpointName=name)
    assert not traffic.failures, traffic.failures[:3]
    assert "pipeline" in shapes and shapes[-1] == "single"


def test_create_model_refuses_environments_over_32_kb_combined_across_containers(sm: Any, echo: str) -> None:
    """ContainerDefinition.Environment (botocore's documentation of the shape): "If you pass multiple
    containers to a CreateModel request, then the maximum length of all of their maps, combined, is also
    32 KB." Three containers of about 15 KB each are within every per-entry and per-map bound, not
    within the combined one."""
    big = {f"VAR_{i:02d}": "x" * 1000 for i in range(15)}
    with pytest.raises(ClientError) as raised:
        sm.create_model(
            ModelName=unique("env"),
            ExecutionRoleArn=ROLE,
            Containers=[container(echo, name, **big) for name in ("a", "b", "c")],
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "Environment" in raised.value.response["Error"]["Message"]


def test_a_hung_direct_request_replaces_the_worker_of_its_own_container_only(
    sm: Any, smr: Any, echo: str
) -> None:
    """A Direct request that outlives the budget at `alpha` replaces alpha's worker (its pid changes)
    and leaves beta's alone: the kill goes to the container the worker belongs to."""
    name = create_endpoint(
        sm,
        [
            container(echo, "alpha", SAGEMAKER_MODEL_SERVER_TIMEOUT="2"),
            container(echo, "beta", SAGEMAKER_MODEL_SERVER_TIMEOUT="2"),
        ],
        mode="Direct",
    )
    try:
        before = {h: _try_invoke(smr, name, h) for h in ("alpha", "beta")}
        with pytest.raises(smr.exceptions.ModelError) as raised:
            smr.invoke_endpoint(
                EndpointName=name,
                Body=json.dumps({"sleep": 30}),
                ContentType="application/json",
                TargetContainerHostname="alpha",
            )
        assert "waiting for a response from container alpha" in raised.value.response["OriginalMessage"]
        after = {h: _until(lambda h=h: _try_invoke(smr, name, h), timeout=60) for h in ("alpha", "beta")}
        assert all(before.values()) and all(after.values()), (before, after)
        assert after["beta"]["pid"] == before["beta"]["pid"], "beta's worker was replaced"  # type: ignore[index]
        assert after["alpha"]["pid"] != before["alpha"]["pid"], "alpha's hung worker still runs"  # type: ignore[index]
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_every_container_whose_model_cannot_be_prepared_is_named(sm: Any, echo: str, tmp_path: Any) -> None:
    """Two of three containers have model data that is not a gzipped tar: the endpoint's FailureReason
    names both (as a start that fails at /ping lists every failing container), not only the first
    whose preparation happened to fail."""
    for name in ("bad-one", "bad-two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.tar.gz").write_bytes(b"this is not a gzipped tar archive\n" * 10)
    name = create_endpoint(
        sm,
        [
            container(echo, "good"),
            container((tmp_path / "bad-one" / "model.tar.gz").as_uri(), "bad-one"),
            container((tmp_path / "bad-two" / "model.tar.gz").as_uri(), "bad-two"),
        ],
        wait=False,
    )
    described = settled(sm, name)
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "bad-one" in reason and "bad-two" in reason, reason
