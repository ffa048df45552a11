"""Multi-model endpoints (Mode MultiModel) through the real server and unchanged boto3: models under an
S3 prefix (the server's own store) and a file:// prefix answer per TargetModel; concurrent first
requests load once; a small memory budget evicts the least recently used model (seen on /metrics) while
the endpoint stays InService; per-model requirements; ModelNotReadyException; ModelCacheSetting
Disabled; and the errors for a missing model, a failing model_fn, and targets an endpoint cannot take."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import deploy, settled, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.pypi import needs_pypi

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
MB = 1024**2

# one inference.py for every model: its name and behaviour come from files in its own archive
MME_INFERENCE = """
import json, os, time

def model_fn(model_dir):
    def read(name, default=""):
        path = os.path.join(model_dir, name)
        return open(path).read().strip() if os.path.exists(path) else default
    name = read("weights.txt")
    log = os.environ.get("LOAD_LOG")
    if log:
        with open(log, "a") as f:
            f.write(name + "\\n")
    flag = os.environ.get("FAIL_FLAG")
    if read("flaky.txt") and flag and os.path.exists(flag):
        raise RuntimeError("weights of " + name + " are corrupt")
    time.sleep(float(read("load_seconds.txt", "0")))
    ballast = b"\\x01" * (int(read("ballast_mb.txt", "0")) * 1024 * 1024)
    return {"name": name, "ballast": ballast, "pid": os.getpid()}

def input_fn(body, content_type):
    return json.loads(body or b"{}")

def predict_fn(data, model):
    return {"model": model["name"], "pid": model["pid"], "echo": data}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""

REQUIREMENTS_INFERENCE = """
import json
import tabulate

def model_fn(model_dir):
    return tabulate.__version__

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return {"tabulate": model}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def model_archive(path: Path, name: str, **files: str) -> Path:
    """A model.tar.gz answering as `name`; `files` (flaky.txt, load_seconds.txt, ballast_mb.txt) set its
    behaviour."""
    return build_model_tar(path, MME_INFERENCE, {"weights.txt": name, **files})


def multi_model_endpoint(
    sm: Any,
    source: str,
    *,
    instances: int = 1,
    environment: dict[str, str] | None = None,
    caching: str | None = None,
    wait: bool = True,
    async_config: dict[str, Any] | None = None,
) -> str:
    container: dict[str, Any] = {"Mode": "MultiModel"}
    if caching is not None:
        container["MultiModelConfig"] = {"ModelCacheSetting": caching}
    return deploy(
        sm,
        source,
        name=unique("mme"),
        instances=instances,
        environment=environment,
        wait=wait,
        container=container,
        config={"AsyncInferenceConfig": async_config} if async_config else None,
    )


def invoke(smr: Any, endpoint: str, target: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = smr.invoke_endpoint(
        EndpointName=endpoint,
        TargetModel=target,
        Body=json.dumps(body or {}).encode(),
        ContentType="application/json",
    )
    result: dict[str, Any] = json.loads(answer["Body"].read())
    return result


def invoke_when_ready(smr: Any, endpoint: str, target: str, timeout: float = 240) -> dict[str, Any]:
    """Invoke, retrying while the model is still loading (ModelNotReadyException), as a client would."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invoke(smr, endpoint, target)
        except ClientError as err:
            if err.response["Error"]["Code"] != "ModelNotReadyException" or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    error: dict[str, Any] = caught.value.response["Error"]
    error["Status"] = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    error["Fields"] = caught.value.response
    return error


def metrics(server: RunningServer, endpoint: str) -> dict[str, float]:
    """Each sample of the endpoint on /metrics, summed over its variants and instances, by sample name."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("endpoint") == endpoint:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with its own S3 store on the port and the default multi-model settings."""
    with moorage_server(tmp_path_factory.mktemp("state"), args=()) as running:
        yield running


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose multi-model instances have a 400 MiB budget and wait 1 s for a load."""
    env = {"MOORAGE_MME_MEMORY_BYTES": str(400 * MB), "MOORAGE_MME_READY_WAIT_SECONDS": "1"}
    with moorage_server(tmp_path_factory.mktemp("tight"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def s3_models(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(bucket, prefix URI) of three models in the server's own S3 store."""
    root = tmp_path_factory.mktemp("s3models")
    s3 = server.client("s3")
    bucket = unique("mme-models")
    s3.create_bucket(Bucket=bucket)
    for key, name in (("a.tar.gz", "alpha"), ("team/b.tar.gz", "beta"), ("c.tar.gz", "gamma")):
        archive = model_archive(root / key.replace("/", "_"), name)
        s3.put_object(Bucket=bucket, Key=f"models/{key}", Body=archive.read_bytes())
    return bucket, f"s3://{bucket}/models/"


@pytest.fixture(scope="module")
def s3_endpoint(server: RunningServer, s3_models: tuple[str, str]) -> str:
    return multi_model_endpoint(server.client("sagemaker"), s3_models[1], instances=2)


def test_models_under_an_s3_prefix_answer_for_themselves(server: RunningServer, s3_endpoint: str) -> None:
    smr = server.client("sagemaker-runtime")
    expected = {"a.tar.gz": "alpha", "team/b.tar.gz": "beta", "c.tar.gz": "gamma"}
    for _ in range(2):
        for target, name in expected.items():
            answer = invoke(smr, s3_endpoint, target, {"for": target})
            assert answer["model"] == name and answer["echo"] == {"for": target}
    seen = metrics(server, s3_endpoint)
    # each model loaded once, on the instance it ranks first, and found there the second time
    assert seen["sagemaker_model_cache_lookups_total"] == 6
    assert seen["sagemaker_model_cache_hits_total"] == 3
    assert seen["sagemaker_model_loading_time_microseconds_count"] == 3
    assert seen["sagemaker_variant_loaded_model_count"] == 3
    assert seen["sagemaker_loaded_model_count"] == 3


def test_a_missing_model_is_a_validation_error_naming_where_it_was_looked_for(
    server: RunningServer, s3_endpoint: str, s3_models: tuple[str, str]
) -> None:
    smr = server.client("sagemaker-runtime")
    error = error_of(lambda: invoke(smr, s3_endpoint, "nope.tar.gz"))
    assert error["Code"] == "ValidationError" and error["Status"] == 400
    assert error["Message"].startswith(
        f"Failed to download model data (bucket: {s3_models[0]}, key: models/nope"
    )


def test_targets_the_endpoint_cannot_take_are_refused(server: RunningServer, s3_endpoint: str) -> None:
    smr = server.client("sagemaker-runtime")
    error = error_of(
        lambda: smr.invoke_endpoint(
            EndpointName=s3_endpoint, TargetContainerHostname="primary", TargetModel="a.tar.gz", Body=b"{}"
        )
    )
    assert error["Code"] == "ValidationError" and "TargetContainerHostname does not apply" in error["Message"]
    error = error_of(lambda: smr.invoke_endpoint(EndpointName=s3_endpoint, Body=b"{}"))
    assert error["Code"] == "ValidationError" and "missing a target model header" in error["Message"]
    error = error_of(lambda: invoke(smr, s3_endpoint, "team/../../secret.tar.gz"))
    assert error["Code"] == "ValidationError" and "'..' segment" in error["Message"]


def test_target_model_on_a_single_model_endpoint_is_refused(server: RunningServer, tmp_path: Path) -> None:
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    plain = deploy(sm, build_model_tar(tmp_path / "plain" / "model.tar.gz").as_uri())
    error = error_of(lambda: invoke(smr, plain, "a.tar.gz"))
    assert error["Code"] == "ValidationError"
    assert f"Endpoint {plain} is not a multi-model endpoint" in error["Message"]
    sm.delete_endpoint(EndpointName=plain)


def test_models_under_a_file_prefix_and_concurrent_first_requests_load_once(
    server: RunningServer, tmp_path: Path
) -> None:
    root = tmp_path / "prefix"
    for name in ("one", "two"):
        model_archive(root / f"{name}.tar.gz", name)
    loads = tmp_path / "loads.log"
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/", environment={"LOAD_LOG": str(loads)})
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: invoke(smr, endpoint, "one.tar.gz"), range(8)))
    assert {a["model"] for a in answers} == {"one"}
    assert len({a["pid"] for a in answers}) == 1
    assert invoke(smr, endpoint, "two.tar.gz")["model"] == "two"
    assert loads.read_text().split() == ["one", "two"]  # eight concurrent first requests, one load
    sm.delete_endpoint(EndpointName=endpoint)


def test_a_failing_model_fn_names_the_model_and_the_next_request_loads_again(
    server: RunningServer, tmp_path: Path
) -> None:
    root = tmp_path / "flaky"
    model_archive(root / "flaky.tar.gz", "flaky-model", **{"flaky.txt": "yes"})
    flag = tmp_path / "fail-now"
    flag.write_text("1")
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/", environment={"FAIL_FLAG": str(flag)})
    error = error_of(lambda: invoke(smr, endpoint, "flaky.tar.gz"))
    assert error["Code"] == "ModelError" and error["Fields"]["OriginalStatusCode"] == 500
    assert "flaky.tar.gz" in error["Message"] and "corrupt" in error["Message"]
    flag.unlink()
    assert invoke(smr, endpoint, "flaky.tar.gz")["model"] == "flaky-model"
    assert settled(sm, endpoint)["EndpointStatus"] == "InService"
    sm.delete_endpoint(EndpointName=endpoint)


def test_cache_disabled_loads_the_model_for_every_request(server: RunningServer, tmp_path: Path) -> None:
    root = tmp_path / "nocache"
    model_archive(root / "m.tar.gz", "uncached")
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/", caching="Disabled")
    first, second = invoke(smr, endpoint, "m.tar.gz"), invoke(smr, endpoint, "m.tar.gz")
    assert first["model"] == second["model"] == "uncached"
    assert first["pid"] != second["pid"]  # unloaded after the first request, loaded again for the second
    seen = metrics(server, endpoint)
    assert seen["sagemaker_model_cache_lookups_total"] == 2
    assert seen["sagemaker_model_cache_hits_total"] == 0
    sm.delete_endpoint(EndpointName=endpoint)


@needs_pypi
def test_models_with_conflicting_requirements_share_an_endpoint(
    server: RunningServer, tmp_path: Path
) -> None:
    root = tmp_path / "requirements"
    for version in ("0.9.0", "0.8.10"):
        build_model_tar(
            root / f"tabulate-{version}.tar.gz",
            REQUIREMENTS_INFERENCE,
            {"code/requirements.txt": f"tabulate=={version}\n"},
        )
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/")
    for version in ("0.9.0", "0.8.10", "0.9.0"):
        assert invoke_when_ready(smr, endpoint, f"tabulate-{version}.tar.gz") == {"tabulate": version}
    sm.delete_endpoint(EndpointName=endpoint)


def test_a_small_budget_evicts_the_least_recently_used_model(tight: RunningServer, tmp_path: Path) -> None:
    """150 MiB of ballast each and 400 MiB per instance: two models fit, a third evicts the oldest."""
    root = tmp_path / "big"
    names = ["big0", "big1", "big2", "big3"]
    for name in names:
        model_archive(root / f"{name}.tar.gz", name, **{"ballast_mb.txt": "150"})
    sm, smr = tight.client("sagemaker"), tight.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/")
    for name in names:
        assert invoke_when_ready(smr, endpoint, f"{name}.tar.gz")["model"] == name
        assert 1 <= metrics(tight, endpoint)["sagemaker_loaded_model_count"] <= 2
    seen = metrics(tight, endpoint)
    assert seen["sagemaker_model_unloading_time_microseconds_count"] >= 2
    # big3 was used last, so it stayed; big0 was evicted first and loads again
    hits = seen["sagemaker_model_cache_hits_total"]
    assert invoke_when_ready(smr, endpoint, "big3.tar.gz")["model"] == "big3"
    assert metrics(tight, endpoint)["sagemaker_model_cache_hits_total"] == hits + 1
    assert invoke_when_ready(smr, endpoint, "big0.tar.gz")["model"] == "big0"
    assert metrics(tight, endpoint)["sagemaker_model_cache_hits_total"] == hits + 1
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    sm.delete_endpoint(EndpointName=endpoint)


def test_a_slow_load_answers_model_not_ready_and_keeps_loading(tight: RunningServer, tmp_path: Path) -> None:
    root = tmp_path / "slow"
    model_archive(root / "slow.tar.gz", "slowpoke", **{"load_seconds.txt": "4"})
    sm, smr = tight.client("sagemaker"), tight.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/")
    error = error_of(lambda: invoke(smr, endpoint, "slow.tar.gz"))
    assert error["Code"] == "ModelNotReadyException" and error["Status"] == 429
    assert invoke_when_ready(smr, endpoint, "slow.tar.gz")["model"] == "slowpoke"
    sm.delete_endpoint(EndpointName=endpoint)


def test_a_multi_model_endpoint_cannot_be_asynchronous(tight: RunningServer, tmp_path: Path) -> None:
    sm = tight.client("sagemaker")
    (tmp_path / "models").mkdir()
    endpoint = multi_model_endpoint(
        sm,
        (tmp_path / "models").as_uri() + "/",
        wait=False,
        async_config={"OutputConfig": {"S3OutputPath": "s3://mme-results/out"}},
    )
    described = settled(sm, endpoint)
    assert described["EndpointStatus"] == "Failed"
    assert "AsyncInferenceConfig" in described["FailureReason"]
