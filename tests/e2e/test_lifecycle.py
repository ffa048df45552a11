"""The whole lifecycle through boto3: create, wait, describe, list, invoke, delete."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, deploy, unique


def test_create_describe_invoke_delete(sm: Any, smr: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, wait=False, environment={"GREETING_SUFFIX": "!"})
    first = sm.describe_endpoint(EndpointName=name)
    assert first["EndpointStatus"] in ("Creating", "InService")
    assert first["EndpointArn"] == f"arn:aws:sagemaker:us-west-2:123456789012:endpoint/{name.lower()}"
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)

    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    assert isinstance(described["CreationTime"], datetime)
    (variant,) = described["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["CurrentInstanceCount"] == 1
    assert variant["DesiredInstanceCount"] == 1
    assert variant["CurrentWeight"] == 1.0
    assert "PendingDeploymentSummary" not in described

    model = sm.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Environment"]["GREETING_SUFFIX"] == "!"
    assert model["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/SageMakerRole"
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    assert config["ProductionVariants"][0]["InitialVariantWeight"] == 1.0

    response = smr.invoke_endpoint(
        EndpointName=name,
        Body=json.dumps({"x": 1}),
        ContentType="application/json",
        Accept="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    answer = json.loads(response["Body"].read())
    assert answer["greeting"] == "hello!"
    assert answer["echo"] == {"x": 1}
    assert response["ResponseMetadata"]["RequestId"]

    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    with pytest.raises(ClientError) as missing:
        sm.describe_endpoint(EndpointName=name)
    assert missing.value.response["Error"]["Code"] == "ValidationException"
    assert missing.value.response["Error"]["Message"] == (
        f'Could not find endpoint "arn:aws:sagemaker:us-west-2:123456789012:endpoint/{name.lower()}".'
    )
    with pytest.raises(smr.exceptions.ValidationError):
        smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    sm.delete_endpoint_config(EndpointConfigName=name)
    sm.delete_model(ModelName=name)


def test_lists_filter_sort_and_paginate(sm: Any, echo_model: str) -> None:
    prefix = unique("lst")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    listed = sm.list_models(NameContains=prefix, SortBy="Name", SortOrder="Ascending")
    assert [m["ModelName"] for m in listed["Models"]] == names
    assert "NextToken" not in listed
    page = sm.list_models(NameContains=prefix, MaxResults=2, SortBy="Name", SortOrder="Descending")
    assert [m["ModelName"] for m in page["Models"]] == names[::-1][:2]
    rest = sm.list_models(
        NameContains=prefix, MaxResults=2, SortBy="Name", SortOrder="Descending", NextToken=page["NextToken"]
    )
    assert [m["ModelName"] for m in rest["Models"]] == [names[0]]
    paginated = [
        m["ModelName"]
        for p in sm.get_paginator("list_models").paginate(
            NameContains=prefix, PaginationConfig={"PageSize": 1}
        )
        for m in p["Models"]
    ]
    assert sorted(paginated) == names
    for name in names:
        sm.delete_model(ModelName=name)


def test_list_endpoints_status_filter(sm: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    in_service = sm.list_endpoints(StatusEquals="InService", NameContains=name)["Endpoints"]
    assert [e["EndpointName"] for e in in_service] == [name]
    assert in_service[0]["EndpointStatus"] == "InService"
    assert sm.list_endpoints(StatusEquals="Failed", NameContains=name)["Endpoints"] == []
    configs = sm.list_endpoint_configs(NameContains=name)["EndpointConfigs"]
    assert configs[0]["EndpointConfigArn"].endswith(f"endpoint-config/{name.lower()}")
    sm.delete_endpoint(EndpointName=name)


def test_listing_survives_creates_between_pages_and_after_is_inclusive(sm: Any, echo_model: str) -> None:
    prefix = unique("pg")
    for i in range(3):
        sm.create_model(ModelName=f"{prefix}-{i}", PrimaryContainer={"ModelDataUrl": echo_model})
    first = sm.list_models(NameContains=prefix, MaxResults=2)  # newest first: -2, -1
    sm.create_model(ModelName=f"{prefix}-3", PrimaryContainer={"ModelDataUrl": echo_model})
    rest = sm.list_models(NameContains=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert [m["ModelName"] for m in first["Models"] + rest["Models"]] == [f"{prefix}-{i}" for i in (2, 1, 0)]

    middle = first["Models"][1]  # its CreationTime as boto3 parsed it, to the millisecond
    after = sm.list_models(NameContains=prefix, CreationTimeAfter=middle["CreationTime"])["Models"]
    assert middle["ModelName"] in [m["ModelName"] for m in after]
    before = sm.list_models(NameContains=prefix, CreationTimeBefore=middle["CreationTime"])["Models"]
    assert middle["ModelName"] not in [m["ModelName"] for m in before]


def test_endpoint_names_match_regardless_of_case(sm: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, name=unique("CaseEP"))
    described = sm.describe_endpoint(EndpointName=name.upper())
    assert described["EndpointName"] == name
    assert described["EndpointArn"].endswith(f"endpoint/{name.lower()}")
    images = described["ProductionVariants"][0]["DeployedImages"]
    assert images[0]["ResolutionTime"] <= described["LastModifiedTime"]
    sm.delete_endpoint(EndpointName=name.lower())
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
