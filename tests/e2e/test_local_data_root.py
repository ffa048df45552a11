"""`moorage serve --credentials FILE --local-data-root DIR` end to end (docs/security.md "Files on the
server's disk"): signed boto3 clients may name paths on the server's disk only below DIR, for an
InvokeEndpointAsync InputLocation and a transform job's S3Uri, S3OutputPath and manifest entries.
Paths below DIR work; the keys file, a symbolic link out of DIR and a manifest prefix outside DIR are
refused with the error a boto3 user reads."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, WaiterError

from tests.e2e.conftest import FAST_WAIT, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

REGION = "us-west-2"
ACCOUNT = "111122223333"
KEY = ("AKIALOCALDATA0000001", "local-data-secret-0123456789abcdefghij")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"

# JSON -> {"echo": …} for async; CSV rows -> their sums for batch transform
MODEL = """
import json

def model_fn(model_dir):
    return {}

def input_fn(body, content_type):
    text = body.decode() if isinstance(body, (bytes, bytearray)) else body
    if content_type == "text/csv":
        return "csv", [line.split(",") for line in text.splitlines() if line.strip()]
    return "json", json.loads(text)

def predict_fn(data, model):
    kind, value = data
    if kind == "csv":
        return "\\n".join(f"{sum(float(c) for c in row):g}" for row in value)
    return json.dumps({"echo": value})

def output_fn(prediction, accept):
    return prediction, accept or "application/json"
"""


@dataclass
class Setup:
    server: RunningServer
    root: Path  # --local-data-root
    outside: Path  # a folder beside it, readable by the server's user
    keys: Path  # the --credentials file, outside the root
    model: str  # a Model's name

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.server.url,
            region_name=REGION,
            aws_access_key_id=KEY[0],
            aws_secret_access_key=KEY[1],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=90),
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("local-data-root")
    keys = base / "keys"
    keys.write_text(
        f"[dev]\naws_access_key_id = {KEY[0]}\naws_secret_access_key = {KEY[1]}\naws_account_id = {ACCOUNT}\n"
    )
    keys.chmod(0o600)
    root = base / "data"
    root.mkdir()
    outside = base / "outside"
    outside.mkdir()
    archive = build_model_tar(base / "model" / "model.tar.gz", MODEL)
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}
    args = ("--no-s3", "--credentials", str(keys), "--local-data-root", str(root))
    with moorage_server(base / "state", env=env, args=args) as server:
        ready = Setup(server, root, outside, keys, unique("local"))
        ready.client("sagemaker").create_model(
            ModelName=ready.model,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "example/image:latest",
                "ModelDataUrl": archive.as_uri(),
                "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
            },
        )
        yield ready


@pytest.fixture(scope="module")
def async_endpoint(setup: Setup) -> str:
    """An async endpoint whose outputs go below the root."""
    sm = setup.client("sagemaker")
    name = unique("async-local")
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": setup.model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        AsyncInferenceConfig={
            "OutputConfig": {
                "S3OutputPath": (setup.root / "async-out").as_uri(),
                "S3FailurePath": (setup.root / "async-failed").as_uri(),
            }
        },
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name


def local_path(uri: str) -> Path:
    """A location the server answered (file:// or a plain path) as a path."""
    return Path(uri.removeprefix("file://"))


def wait_file(path: Path, timeout: float = 120) -> bytes:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.2)
    return path.read_bytes()


def refusal(call: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error: dict[str, str] = refused.value.response["Error"]
    return error


def invoke_async(setup: Setup, endpoint: str, location: str) -> Any:
    return setup.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=endpoint, InputLocation=location, ContentType="application/json"
    )


def test_async_input_below_the_root_is_read(setup: Setup, async_endpoint: str) -> None:
    for spelling in ("uri", "path"):
        request = setup.root / "requests" / f"{spelling}.json"
        request.parent.mkdir(exist_ok=True)
        request.write_text(json.dumps({"spelling": spelling}))
        location = request.as_uri() if spelling == "uri" else str(request)
        answer = invoke_async(setup, async_endpoint, location)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
        output = local_path(answer["OutputLocation"])
        assert output.parent == setup.root / "async-out"
        assert json.loads(wait_file(output)) == {"echo": {"spelling": spelling}}


def test_async_input_outside_the_root_is_refused(setup: Setup, async_endpoint: str) -> None:
    outside = setup.outside / "request.json"
    outside.write_text(json.dumps({"from": "outside"}))
    # the keys file itself, another folder, and a `..` that climbs out of the root
    climbing = f"{setup.root}/../outside/request.json"
    for location in (setup.keys.as_uri(), str(setup.keys), outside.as_uri(), climbing):
        error = refusal(lambda location=location: invoke_async(setup, async_endpoint, location))
        assert error["Code"] == "ValidationError", location
        assert "--local-data-root" in error["Message"] and location in error["Message"]
    # refused before queuing: no failure object for it
    assert not list((setup.root / "async-failed").glob("*"))


def test_async_symlink_out_of_the_root_is_refused(setup: Setup, async_endpoint: str) -> None:
    link = setup.root / "innocent.json"
    link.symlink_to(setup.keys)
    for location in (link.as_uri(), str(link)):
        error = refusal(lambda location=location: invoke_async(setup, async_endpoint, location))
        assert error["Code"] == "ValidationError"
        assert "--local-data-root" in error["Message"]
    # a link that stays inside the root is fine
    target = setup.root / "real.json"
    target.write_text(json.dumps({"linked": True}))
    inside = setup.root / "alias.json"
    inside.symlink_to(target)
    answer = invoke_async(setup, async_endpoint, inside.as_uri())
    assert json.loads(wait_file(local_path(answer["OutputLocation"]))) == {"echo": {"linked": True}}


def create_job(setup: Setup, source: str, output: str, data_type: str = "S3Prefix") -> str:
    name = unique("local-job")
    setup.client("sagemaker").create_transform_job(
        TransformJobName=name,
        ModelName=setup.model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": source}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": output, "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    return name


def finished(setup: Setup, name: str) -> dict[str, Any]:
    sm = setup.client("sagemaker")
    with contextlib.suppress(WaiterError):  # Failed: the description says why
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig=FAST_WAIT
        )
    described: dict[str, Any] = sm.describe_transform_job(TransformJobName=name)
    return described


def test_transform_job_below_the_root_completes(setup: Setup) -> None:
    source = setup.root / "tin"
    (source / "sub").mkdir(parents=True)
    (source / "a.csv").write_text("1,2\n3,4\n")
    (source / "sub" / "b.csv").write_text("10,20\n")
    output = setup.root / "tout"
    name = create_job(setup, source.as_uri() + "/", str(output))
    described = finished(setup, name)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    assert (output / "a.csv.out").read_text().split() == ["3", "7"]
    assert (output / "sub" / "b.csv.out").read_text().split() == ["30"]


def test_transform_job_outside_the_root_is_refused_at_create(setup: Setup) -> None:
    (setup.outside / "tin").mkdir(exist_ok=True)
    (setup.outside / "tin" / "a.csv").write_text("1,2\n")
    cases = [
        ((setup.outside / "tin").as_uri(), (setup.root / "refused-out").as_uri()),  # input outside
        (str(setup.keys), str(setup.root / "refused-out")),  # the keys file
        ((setup.root / "tin").as_uri(), (setup.outside / "written").as_uri()),  # output outside
    ]
    for source, output in cases:
        error = refusal(lambda source=source, output=output: create_job(setup, source, output))
        assert error["Code"] == "ValidationException", (source, output)
        assert "--local-data-root" in error["Message"]
    assert not (setup.root / "refused-out").exists()
    assert not (setup.outside / "written").exists()


def test_manifest_pointing_outside_the_root_fails_the_job(setup: Setup) -> None:
    secret = setup.outside / "secret"
    secret.mkdir()
    (secret / "rows.csv").write_text("5,6\n")
    manifest = setup.root / "escape.manifest"
    manifest.write_text(json.dumps([{"prefix": secret.as_uri() + "/"}, "rows.csv"]))
    output = setup.root / "manifest-out"
    name = create_job(setup, manifest.as_uri(), output.as_uri(), data_type="ManifestFile")
    described = finished(setup, name)
    assert described["TransformJobStatus"] == "Failed"
    assert "--local-data-root" in described["FailureReason"]
    assert "rows.csv" in described["FailureReason"]
    assert not (output / "rows.csv.out").exists()
