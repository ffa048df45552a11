"""Artifacts from a real S3-compatible server (SeaweedFS), file:// URLs and plain paths, and per-model
environments built from code/requirements.txt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import deploy, settled, unique
from tests.support.models import ECHO_INFERENCE, build_model_tar
from tests.support.moorage_server import moorage_server

REQUIREMENTS_INFERENCE = """
import json
import tabulate

def model_fn(model_dir):
    return tabulate.__version__

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return model

def output_fn(prediction, accept):
    return json.dumps({"tabulate": prediction})
"""


def test_s3_model_data(s3_server: Any, tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    bucket = unique("models")
    s3.create_bucket(Bucket=bucket)
    archive = build_model_tar(tmp_path / "model.tar.gz")
    s3.upload_file(str(archive), bucket, "echo/model.tar.gz")
    with moorage_server(tmp_path / "state", env=env) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        name = deploy(sm, f"s3://{bucket}/echo/model.tar.gz")
        answer = json.loads(
            smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")["Body"].read()
        )
        assert answer["greeting"] == "hello"
        missing = deploy(sm, f"s3://{bucket}/nope/model.tar.gz", wait=False)
        described = settled(sm, missing)
        assert described["EndpointStatus"] == "Failed"
        assert f"s3://{bucket}/nope/model.tar.gz" in described["FailureReason"]


def test_plain_path_model_data(sm: Any, smr: Any, tmp_path: Path) -> None:
    archive = build_model_tar(tmp_path / "plain" / "model.tar.gz")
    name = deploy(sm, str(archive))
    answer = json.loads(
        smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")["Body"].read()
    )
    assert answer["greeting"] == "hello"
    sm.delete_endpoint(EndpointName=name)


def test_requirements_txt_builds_a_cached_environment(sm: Any, smr: Any, server: Any, tmp_path: Path) -> None:
    installed = subprocess.run([sys.executable, "-c", "import tabulate"], capture_output=True).returncode == 0
    if installed:
        pytest.skip("tabulate is installed in the server environment; the test needs a package that is not")
    files = {"code/requirements.txt": "tabulate==0.9.0\n"}
    first = deploy(
        sm,
        build_model_tar(
            tmp_path / "r1" / "model.tar.gz", inference=REQUIREMENTS_INFERENCE, files=files
        ).as_uri(),
    )
    answer = json.loads(smr.invoke_endpoint(EndpointName=first, Body=b"{}")["Body"].read())
    assert answer == {"tabulate": "0.9.0"}
    files["weights.txt"] = "another artifact, same requirements"
    second = deploy(
        sm,
        build_model_tar(
            tmp_path / "r2" / "model.tar.gz", inference=REQUIREMENTS_INFERENCE, files=files
        ).as_uri(),
    )
    assert json.loads(smr.invoke_endpoint(EndpointName=second, Body=b"{}")["Body"].read()) == answer
    second_log = (server.state_dir / "logs" / f"{second}.log").read_text().lower()
    assert "cached" in second_log
    assert "installed" not in second_log.replace("already installed", "")


def test_requirements_failure_reason(sm: Any, tmp_path: Path) -> None:
    files = {"code/requirements.txt": "this-package-does-not-exist-moorage==1.0\n"}
    name = deploy(sm, build_model_tar(tmp_path / "bad" / "model.tar.gz", files=files).as_uri(), wait=False)
    described = settled(sm, name)
    assert described["EndpointStatus"] == "Failed"
    assert "requirements.txt" in described["FailureReason"]
    assert "this-package-does-not-exist-moorage" in described["FailureReason"]


def test_model_data_source_uncompressed_prefix(sm: Any, smr: Any, tmp_path: Path) -> None:
    """ModelDataSource with an uncompressed S3Prefix; a local prefix is used in place."""
    root = tmp_path / "uncompressed"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(ECHO_INFERENCE)
    (root / "weights.txt").write_text("from a prefix")
    name = unique("mds")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": root.as_uri() + "/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            },
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        },
    )
    assert sm.describe_model(ModelName=name)["PrimaryContainer"]["ModelDataSource"]["S3DataSource"][
        "S3DataType"
    ] == ("S3Prefix")
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = settled(sm, name)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    answer = json.loads(
        smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")["Body"].read()
    )
    assert answer["greeting"] == "from a prefix"
    sm.delete_endpoint(EndpointName=name)
