"""AddTags / ListTags / DeleteTags on models, endpoint configs and endpoints, through boto3."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy, unique

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _model(sm: Any, echo_model: str, tags: list[dict[str, str]]) -> str:
    arn: str = sm.create_model(
        ModelName=unique("tagged"),
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": echo_model},
        Tags=tags,
    )["ModelArn"]
    return arn


def _error(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return dict(raised.value.response["Error"])


def test_tags_from_create_can_be_listed_added_and_deleted(sm: Any, echo_model: str) -> None:
    arn = _model(sm, echo_model, [{"Key": "team", "Value": "recs"}, {"Key": "stage", "Value": "dev"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [
        {"Key": "team", "Value": "recs"},
        {"Key": "stage", "Value": "dev"},
    ]
    added = sm.add_tags(
        ResourceArn=arn, Tags=[{"Key": "stage", "Value": "prod"}, {"Key": "owner", "Value": "a"}]
    )
    assert added["Tags"] == [{"Key": "stage", "Value": "prod"}, {"Key": "owner", "Value": "a"}]
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [
        {"Key": "team", "Value": "recs"},
        {"Key": "stage", "Value": "prod"},
        {"Key": "owner", "Value": "a"},
    ]
    sm.delete_tags(ResourceArn=arn, TagKeys=["team", "not-there"])
    assert [t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]] == ["stage", "owner"]


def test_endpoint_and_endpoint_config_tags(sm: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, wait=False)
    endpoint = sm.describe_endpoint(EndpointName=name)["EndpointArn"]
    config = sm.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"]
    sm.add_tags(ResourceArn=endpoint, Tags=[{"Key": "kind", "Value": "endpoint"}])
    sm.add_tags(ResourceArn=config, Tags=[{"Key": "kind", "Value": "config"}])
    assert sm.list_tags(ResourceArn=endpoint)["Tags"] == [{"Key": "kind", "Value": "endpoint"}]
    assert sm.list_tags(ResourceArn=config)["Tags"] == [{"Key": "kind", "Value": "config"}]
    pages = list(sm.get_paginator("list_tags").paginate(ResourceArn=endpoint))
    assert [t for page in pages for t in page["Tags"]] == [{"Key": "kind", "Value": "endpoint"}]
    sm.delete_endpoint(EndpointName=name)


def test_tag_errors(sm: Any, echo_model: str) -> None:
    missing = "arn:aws:sagemaker:us-east-1:123456789012:model/never-created"
    error = _error(sm.list_tags, ResourceArn=missing)
    assert error["Code"] == "ValidationException"
    assert error["Message"] == f'Could not find model "{missing}".'

    arn = _model(sm, echo_model, [{"Key": f"k{i}", "Value": "v"} for i in range(30)])
    error = _error(sm.add_tags, ResourceArn=arn, Tags=[{"Key": f"new{i}", "Value": "v"} for i in range(30)])
    assert error["Code"] == "ResourceLimitExceeded" and "at most 50" in error["Message"]
    assert len(sm.list_tags(ResourceArn=arn)["Tags"]) == 30  # nothing was added

    error = _error(sm.add_tags, ResourceArn=arn, Tags=[{"Key": "aws:owner", "Value": "v"}])
    assert error["Code"] == "ValidationException" and "reserved" in error["Message"]
    error = _error(
        sm.create_model,
        ModelName=unique("reserved"),
        PrimaryContainer={"ModelDataUrl": echo_model},
        Tags=[{"Key": "AWS:team", "Value": "v"}],
    )
    assert error["Code"] == "ValidationException" and "reserved" in error["Message"]

    job = "arn:aws:sagemaker:us-east-1:123456789012:training-job/x"
    assert _error(sm.list_tags, ResourceArn=job)["Code"] == "ValidationException"
