"""Review of batch transform end to end: each test fails on a bug found in review (see its docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.moorage_server import RunningServer, moorage_server

REGION = "us-west-2"
ACCOUNT = "111122223333"
KEY = ("AKIAREVIEWEXAMPLE001", "review-secret-0123456789abcdefghijklmn")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("signed")
    keys = root / "keys"
    keys.write_text(
        f"[review]\naws_access_key_id = {KEY[0]}\naws_secret_access_key = {KEY[1]}\n"
        f"aws_account_id = {ACCOUNT}\n"
    )
    keys.chmod(0o600)
    env = {"AWS_EC2_METADATA_DISABLED": "true"}
    with moorage_server(root / "state", env=env, args=("--no-s3", "--credentials", str(keys))) as running:
        yield running


def _sm(server: RunningServer) -> Any:
    return boto3.session.Session().client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=KEY[0],
        aws_secret_access_key=KEY[1],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.mark.parametrize("where", ["input", "output"])
def test_a_signed_caller_cannot_point_a_transform_job_at_the_servers_disk(
    signed: RunningServer, tmp_path: Path, where: str
) -> None:
    """docs/security.md: with --credentials, a path on the server is accepted only below
    --local-data-root, 'so a signed caller cannot have the server read, and hand to a model, any file
    the server's user may read'. CreateTransformJob takes file:// (or plain path) S3Uri and S3OutputPath
    from any signed caller with no such check: the job reads every file below e.g. file:///home/ (or a
    manifest's file:// prefix) into the caller's own model, whose output lands in the caller's bucket,
    and writes `<name>.out` files anywhere the server's user may write."""
    sm = _sm(signed)
    name = f"review-disk-{where}"
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": "s3://models/model.tar.gz"},
    )
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    source = secret.as_uri() if where == "input" else "s3://data/in/"
    output = "s3://data/out/" if where == "input" else (tmp_path / "anywhere").as_uri()
    with pytest.raises(ClientError) as refused:
        sm.create_transform_job(
            TransformJobName=name,
            ModelName=name,
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}}},
            TransformOutput={"S3OutputPath": output},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_stopping_a_job_that_does_not_exist_is_resource_not_found(signed: RunningServer) -> None:
    """botocore's model gives StopTransformJob one error, ResourceNotFound (so boto3 code catches
    `sm.exceptions.ResourceNotFound`); Moorage answers ValidationException, the Describe waiter's code,
    for Stop too (control/transform_jobs.py stop_transform_job -> job_not_found)."""
    sm = _sm(signed)
    with pytest.raises(sm.exceptions.ResourceNotFound):
        sm.stop_transform_job(TransformJobName="never-created")


def test_job_names_differing_only_in_case_are_one_name(signed: RunningServer) -> None:
    """ARNs carry the name lower-cased (Caller.arn), and endpoints are unique case-insensitively
    (EndpointRow.name_key), but TransformJobRow's key is the name as given: `Score-A` and `score-a` are
    both created, with the same ARN, so AddTags / ListTags on that ARN (control/tags.py `_resource`:
    `.where(arn == ...).first()`) reach whichever row comes first. AWS refuses the second name
    (ResourceInUse, naming the existing job's ARN)."""
    sm = _sm(signed)
    sm.create_model(
        ModelName="review-case",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": "s3://models/model.tar.gz"},
    )
    arns = []
    for name in ("Review-Case-Job", "review-case-job"):
        with contextlib.suppress(ClientError):
            arns.append(
                sm.create_transform_job(
                    TransformJobName=name,
                    ModelName="review-case",
                    TransformInput={
                        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}}
                    },
                    TransformOutput={"S3OutputPath": "s3://data/out/"},
                    TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
                )["TransformJobArn"]
            )
    assert len(arns) == 1, f"two jobs share the ARN {arns}"
