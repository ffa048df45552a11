"""Multi-model and multi-container endpoints meeting the rest of the server: a restart (SIGTERM and
SIGKILL) on the same state, blue/green UpdateEndpoint between the kinds, capacity changes of a
multi-model variant, DeleteEndpoint while a load or a pipeline request is under way, DescribeEndpoint's
view of them, and `moorage invoke` aimed at a model or a container."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import deploy, model_and_config, settled
from tests.e2e.test_multimodel import invoke_when_ready, model_archive, multi_model_endpoint
from tests.e2e.test_pipelines import MIDDLE, PREPROCESS, SCORER, container, create_endpoint
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.traffic import SteadyTraffic

MARK = "MOORAGE_IT_MARK"


def marked(mark: str) -> set[int]:
    """Live processes whose environment carries MARK=`mark` (instances, MME model processes, pipeline
    containers: each inherits the Environment of its container)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
        except OSError:
            continue
        if f"{MARK}={mark}".encode() in env:
            found.add(int(entry))
    return found


def until(check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def mme_prefix(root: Path, **names: str) -> str:
    """A file:// prefix holding one model per key (its TargetModel `<key>.tar.gz`) answering as its value."""
    for key, name in names.items():
        model_archive(root / f"{key}.tar.gz", name)
    return root.as_uri() + "/"


def pipeline(sm: Any, tmp: Path, mark: str) -> str:
    """pre → mid → scorer (tests/e2e/test_pipelines.py), each container carrying MARK=`mark`."""
    urls = {
        n: build_model_tar(tmp / n / "model.tar.gz", code).as_uri()
        for n, code in (("pre", PREPROCESS), ("mid", MIDDLE), ("scorer", SCORER))
    }
    return create_endpoint(sm, [container(urls[n], **{MARK: mark}) for n in ("pre", "mid", "scorer")])


def score(smr: Any, endpoint: str) -> dict[str, Any]:
    answer = smr.invoke_endpoint(EndpointName=endpoint, Body=b"1,2", ContentType="text/csv")
    result: dict[str, Any] = json.loads(answer["Body"].read())
    return result


def model_name(smr: Any, endpoint: str, target: str) -> str:
    return str(invoke_when_ready(smr, endpoint, target)["model"])


# ---- restart ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_restart_brings_mme_and_pipeline_back_and_leaves_no_process(tmp_path: Path, how: int) -> None:
    mark = uuid.uuid4().hex
    state = tmp_path / "state"
    prefix = mme_prefix(tmp_path / "models", a="alpha", b="beta")
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        mme = multi_model_endpoint(sm, prefix, environment={MARK: mark})
        pipe = pipeline(sm, tmp_path / "pipe", mark)
        assert model_name(smr, mme, "a.tar.gz") == "alpha"
        assert model_name(smr, mme, "b.tar.gz") == "beta"
        assert score(smr, pipe)["score"] == 6.0
        before = marked(mark)
        # the MME manager, its two model processes, three containers (each with its worker)
        assert len(before) >= 6, before
        server.process.send_signal(how)
        server.process.wait(60)
        left = until(lambda: not marked(mark), timeout=20)
        assert left, f"processes of the stopped server still running: {sorted(marked(mark))}"
    with moorage_server(state) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        for name, images in ((mme, 1), (pipe, 3)):
            described = settled(sm, name)
            assert described["EndpointStatus"] == "InService"
            variant = described["ProductionVariants"][0]
            assert variant["CurrentInstanceCount"] == 1
            assert len(variant["DeployedImages"]) == images  # one per container
        assert model_name(smr, mme, "b.tar.gz") == "beta"
        assert score(smr, pipe)["score"] == 6.0
        assert not marked(mark) & before


# ---- blue/green -----------------------------------------------------------------------------------------


class TargetedTraffic:
    """Invocations of one TargetModel back to back until the block ends: answers and failures kept."""

    def __init__(self, smr: Any, endpoint: str, target: str) -> None:
        self.smr, self.endpoint, self.target = smr, endpoint, target
        self.answers: list[str] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> TargetedTraffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                answer = self.smr.invoke_endpoint(
                    EndpointName=self.endpoint,
                    TargetModel=self.target,
                    Body=b"{}",
                    ContentType="application/json",
                )
                self.answers.append(json.loads(answer["Body"].read())["model"])
            except BaseException as exc:
                self.failures.append(exc)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state")) as running:
        yield running


def test_mme_to_mme_with_another_prefix_under_steady_traffic(plain: RunningServer, tmp_path: Path) -> None:
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, mme_prefix(tmp_path / "old", m="old-m"))
    assert model_name(smr, endpoint, "m.tar.gz") == "old-m"
    config = model_and_config(
        sm,
        mme_prefix(tmp_path / "new", m="new-m"),
        container={"Mode": "MultiModel"},
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
    )
    with TargetedTraffic(smr, endpoint, "m.tar.gz") as traffic:
        until(lambda: len(traffic.answers) >= 3)
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        assert settled(sm, endpoint)["EndpointStatus"] == "InService"
        until(lambda: traffic.answers[-1:] == ["new-m"])
    assert traffic.failures == []
    assert traffic.answers[-1] == "new-m"
    assert set(traffic.answers) == {"old-m", "new-m"}
    sm.delete_endpoint(EndpointName=endpoint)


def test_single_model_to_mme_and_back(plain: RunningServer, tmp_path: Path, echo_model: str) -> None:
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    endpoint = deploy(sm, echo_model)
    mme = model_and_config(
        sm,
        mme_prefix(tmp_path / "p", m="mm"),
        container={"Mode": "MultiModel"},
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
    )
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=mme)
    assert settled(sm, endpoint)["EndpointStatus"] == "InService"
    assert model_name(smr, endpoint, "m.tar.gz") == "mm"
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
    assert settled(sm, endpoint)["EndpointStatus"] == "InService"
    answer = smr.invoke_endpoint(EndpointName=endpoint, Body=b"{}", ContentType="application/json")
    assert json.loads(answer["Body"].read())["greeting"] == "hello"
    with pytest.raises(ClientError) as caught:
        smr.invoke_endpoint(
            EndpointName=endpoint, TargetModel="m.tar.gz", Body=b"{}", ContentType="application/json"
        )
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    sm.delete_endpoint(EndpointName=endpoint)


def echo_pipeline(sm: Any, echo: str, count: int) -> str:
    """`count` echo containers in a row: JSON flows through; the suffix tells the pipelines apart."""
    return create_endpoint(sm, [container(echo, GREETING_SUFFIX=f"-{count}") for _ in range(count)])


def test_pipeline_to_a_pipeline_of_fewer_containers_under_steady_traffic(
    plain: RunningServer, echo_model: str
) -> None:
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    endpoint = echo_pipeline(sm, echo_model, 3)
    assert len(sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]["DeployedImages"]) == 3
    shorter = echo_pipeline(sm, echo_model, 2)  # a second endpoint: its config is the one to move to
    with SteadyTraffic(smr, endpoint, lambda answer: str(answer["greeting"])) as traffic:
        until(lambda: len(traffic.answers) >= 3)
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=shorter)
        assert settled(sm, endpoint)["EndpointStatus"] == "InService"
        until(lambda: traffic.answers[-1:] == ["hello-2"])
    assert traffic.failures == []
    assert set(traffic.answers) == {"hello-3", "hello-2"}
    variant = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]
    assert len(variant["DeployedImages"]) == 2
    assert variant["CurrentInstanceCount"] == 1
    for name in (endpoint, shorter):
        sm.delete_endpoint(EndpointName=name)


# ---- capacity ---------------------------------------------------------------------------------------------


def loaded_per_instance(server: RunningServer, endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sagemaker_loaded_model_count" and sample.labels.get("endpoint") == endpoint:
                found[str(sample.labels)] = sample.value
    return found


def test_an_mme_variant_scales_out_and_in_and_moves_only_what_it_must(
    plain: RunningServer, tmp_path: Path
) -> None:
    """1 → 2 instances: a model either stays where it is loaded (same process) or is loaded on the new
    instance, and the old instance keeps every model it had; 2 → 1: every model answers again."""
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    names = {f"m{i}": f"model-{i}" for i in range(6)}
    endpoint = multi_model_endpoint(sm, mme_prefix(tmp_path / "p", **names))

    def pids() -> dict[str, int]:
        answers = {key: invoke_when_ready(smr, endpoint, f"{key}.tar.gz") for key in names}
        assert {key: a["model"] for key, a in answers.items()} == names
        return {key: int(a["pid"]) for key, a in answers.items()}

    def capacity(count: int) -> dict[str, Any]:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=endpoint,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": count}],
        )
        return settled(sm, endpoint)

    alone = pids()
    out = capacity(2)
    assert out["EndpointStatus"] == "InService"
    assert out["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    spread = pids()
    assert pids() == spread, "a model answered from another process than a moment ago"
    moved = sum(spread[key] != alone[key] for key in names)
    # the old instance still holds all six; the new one only those placement sent to it (none, one time
    # in 64: the instance ids are random, and so is which models rank the new instance first)
    expected = len(names) + moved
    counts = until(lambda: sum((seen := loaded_per_instance(plain, endpoint)).values()) == expected and seen)
    assert counts and len(counts) == (2 if moved else 1), (loaded_per_instance(plain, endpoint), moved)
    back = capacity(1)
    assert back["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    pids()
    assert until(lambda: len(loaded_per_instance(plain, endpoint)) == 1), loaded_per_instance(plain, endpoint)
    sm.delete_endpoint(EndpointName=endpoint)


# ---- delete while busy ------------------------------------------------------------------------------------


def test_delete_during_an_mme_load_answers_the_waiting_request_and_leaves_no_process(
    plain: RunningServer, tmp_path: Path
) -> None:
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    mark = uuid.uuid4().hex
    model_archive(tmp_path / "p" / "slow.tar.gz", "slow", **{"load_seconds.txt": "30"})
    endpoint = multi_model_endpoint(sm, (tmp_path / "p").as_uri() + "/", environment={MARK: mark})
    outcome: list[Any] = []

    def call() -> None:
        try:
            smr.invoke_endpoint(
                EndpointName=endpoint, TargetModel="slow.tar.gz", Body=b"{}", ContentType="application/json"
            )
            outcome.append("answered")
        except ClientError as err:
            outcome.append(err.response)
        except BaseException as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=call)
    waiting.start()
    # the manager and the loading model process
    assert until(lambda: len(marked(mark)) >= 2, timeout=30), marked(mark)
    sm.delete_endpoint(EndpointName=endpoint)
    waiting.join(40)
    assert not waiting.is_alive(), "the request waiting for the load hung past the delete"
    assert len(outcome) == 1 and isinstance(outcome[0], dict), outcome
    error = outcome[0]["Error"]["Code"]
    assert error not in ("InternalFailure", "InternalServerError"), outcome[0]
    assert until(lambda: not marked(mark), timeout=30), sorted(marked(mark))
    # the instance was stopped on purpose: nothing replaces it, and the message must not say otherwise
    assert "being replaced" not in outcome[0]["Error"]["Message"], outcome[0]["Error"]


def test_delete_with_pipeline_requests_in_flight(plain: RunningServer, tmp_path: Path) -> None:
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    mark = uuid.uuid4().hex
    endpoint = pipeline(sm, tmp_path / "p", mark)
    outcomes: list[Any] = []

    def call() -> None:
        try:  # 7 → 14 after the first container: the middle sleeps 8 s
            smr.invoke_endpoint(EndpointName=endpoint, Body=b"7", ContentType="text/csv")
            outcomes.append("answered")
        except ClientError as err:
            outcomes.append(err.response["Error"]["Code"])
        except BaseException as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # let them reach the middle container
    sm.delete_endpoint(EndpointName=endpoint)
    for thread in threads:
        thread.join(40)
    assert not any(t.is_alive() for t in threads)
    assert all(o == "answered" or (isinstance(o, str) and o != "InternalFailure") for o in outcomes), outcomes
    assert until(lambda: not marked(mark), timeout=30), sorted(marked(mark))


# ---- CLI ---------------------------------------------------------------------------------------------------


def moorage_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    clean |= {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    command = [sys.executable, "-m", "moorage", *args, "--endpoint-url", url]
    return subprocess.run(command, capture_output=True, text=True, env=clean, timeout=120)


def test_cli_invoke_names_a_target_model_and_a_target_container(plain: RunningServer, tmp_path: Path) -> None:
    sm = plain.client()
    mme = multi_model_endpoint(sm, mme_prefix(tmp_path / "p", m="cli-m"))
    echo = build_model_tar(tmp_path / "echo" / "model.tar.gz").as_uri()
    direct = create_endpoint(
        sm,
        [container(echo, "alpha", GREETING_SUFFIX="-a"), container(echo, "beta", GREETING_SUFFIX="-b")],
        mode="Direct",
    )
    result = moorage_cli(
        "invoke",
        mme,
        "--body",
        "{}",
        "--content-type",
        "application/json",
        "--target-model",
        "m.tar.gz",
        url=plain.url,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "cli-m"
    result = moorage_cli(
        "invoke",
        direct,
        "--body",
        "{}",
        "--content-type",
        "application/json",
        "--target-container-hostname",
        "beta",
        url=plain.url,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["greeting"] == "hello-b"
    for name in (mme, direct):
        sm.delete_endpoint(EndpointName=name)


# ---- what the instance uses --------------------------------------------------------------------------------


def instance_gauge(server: RunningServer, name: str, endpoint: str) -> float | None:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("endpoint") == endpoint:
                return float(sample.value)
    return None


def test_an_mme_instances_memory_utilization_counts_its_loaded_models(
    plain: RunningServer, tmp_path: Path
) -> None:
    """MemoryUtilization (and CPUUtilization, which autoscaling tracks) of a multi-model instance is the
    manager's and its models' together: the models are where the memory and the work are."""
    sm, smr = plain.client(), plain.client("sagemaker-runtime")
    model_archive(tmp_path / "p" / "big.tar.gz", "big", **{"ballast_mb.txt": "600"})
    endpoint = multi_model_endpoint(sm, (tmp_path / "p").as_uri() + "/")
    name = "sagemaker_memory_utilization_percent"
    assert until(lambda: instance_gauge(plain, name, endpoint) is not None)
    before = instance_gauge(plain, name, endpoint)
    assert before is not None
    assert model_name(smr, endpoint, "big.tar.gz") == "big"
    with open("/proc/meminfo") as meminfo:
        total = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1]) * 1024
    grown = 100 * 500 * 1024**2 / total  # at least 500 of the 600 MiB
    after = until(
        lambda: (v := instance_gauge(plain, name, endpoint)) is not None and v >= before + grown and v
    )
    assert after, (
        f"{name} stayed at {instance_gauge(plain, name, endpoint)} (was {before}) with 600 MiB loaded"
    )
    sm.delete_endpoint(EndpointName=endpoint)
