"""awsJson1_1 checked by botocore itself: it serializes and we parse, we serialize and it parses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

from moorage.api.errors import SerializationException, UnknownOperationException, ValidationException
from moorage.api.json_protocol import operation_for_target, parse_json_request, serialize_json_response
from moorage.api.spec import load_service

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ARN = "arn:aws:sagemaker:us-east-1:123456789012"
T0 = datetime(2024, 5, 17, 9, 30, 15, 123000, tzinfo=UTC)
T1 = datetime(2024, 5, 17, 9, 41, 2, 7000, tzinfo=UTC)

REQUESTS: list[tuple[str, dict[str, Any]]] = [
    (
        "CreateModel",
        {
            "ModelName": "recommender-v2",
            "PrimaryContainer": {
                "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sklearn:1.2-1",
                "ModelDataUrl": "s3://models/recommender/model.tar.gz",
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "TOP_K": "10"},
                "Mode": "SingleModel",
            },
            "ExecutionRoleArn": ROLE,
            "Tags": [{"Key": "team", "Value": "search"}, {"Key": "stage", "Value": "prod"}],
            "EnableNetworkIsolation": False,
        },
    ),
    (
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "recommender-config",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "recommender-v2",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 2,
                    "InitialVariantWeight": 0.75,
                },
                {
                    "VariantName": "Serverless",
                    "ModelName": "recommender-v2",
                    "InitialVariantWeight": 0.25,
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                },
            ],
            "Tags": [{"Key": "team", "Value": "search"}],
        },
    ),
    ("CreateEndpoint", {"EndpointName": "recommender", "EndpointConfigName": "recommender-config"}),
    (
        "ListEndpoints",
        {
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 10,
            "NameContains": "rec",
            "CreationTimeAfter": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
            "StatusEquals": "InService",
        },
    ),
    (
        "UpdateEndpoint",
        {
            "EndpointName": "recommender",
            "EndpointConfigName": "recommender-config-2",
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredInstanceCount"}],
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                    "TerminationWaitInSeconds": 120,
                }
            },
        },
    ),
    ("DeleteEndpoint", {"EndpointName": "recommender"}),
]


def _sm() -> ServiceModel:
    return load_service("sagemaker")


def _botocore_request(operation_name: str, params: dict[str, Any]) -> dict[str, Any]:
    operation = _sm().operation_model(operation_name)
    report = ParamValidator().validate(params, operation.input_shape)
    assert not report.has_errors(), report.generate_report()  # what boto3 would refuse never reaches us
    request: dict[str, Any] = create_serializer("json").serialize_to_request(params, operation)
    return request


@pytest.mark.parametrize(("operation_name", "params"), REQUESTS, ids=[r[0] for r in REQUESTS])
def test_botocore_request_parses_back_to_its_input(operation_name: str, params: dict[str, Any]) -> None:
    request = _botocore_request(operation_name, params)
    operation = operation_for_target(_sm(), request["headers"]["X-Amz-Target"])
    assert operation.name == operation_name
    assert parse_json_request(operation, request["body"]) == params


def test_parsed_timestamps_are_aware_utc() -> None:
    request = _botocore_request("ListEndpoints", {"CreationTimeAfter": datetime(2024, 1, 2, 3, 4, 5)})
    parsed = parse_json_request(_sm().operation_model("ListEndpoints"), request["body"])
    assert parsed["CreationTimeAfter"] == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parsed["CreationTimeAfter"].tzinfo is UTC


@pytest.mark.parametrize(
    "raw",
    [
        1704164645,
        1704164645.0,
        "1704164645",
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05+00:00",
        "2024-01-02T04:04:05+01:00",
        "2024-01-02T03:04:05",
    ],
)
def test_timestamps_accept_epoch_and_iso(raw: Any) -> None:
    operation = _sm().operation_model("ListEndpoints")
    parsed = parse_json_request(operation, json.dumps({"CreationTimeBefore": raw}).encode())
    assert parsed == {"CreationTimeBefore": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}


def test_unknown_members_are_dropped_and_null_is_absent() -> None:
    body = {
        "EndpointConfigName": "cfg",
        "BrandNewTopLevelMember": {"x": 1},
        "KmsKeyId": None,
        "ProductionVariants": [
            {
                "VariantName": "v",
                "ModelName": "m",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1, "FutureKnob": True},
                "AlsoNew": [1, 2],
            },
        ],
    }
    parsed = parse_json_request(_sm().operation_model("CreateEndpointConfig"), json.dumps(body).encode())
    assert parsed == {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [
            {
                "VariantName": "v",
                "ModelName": "m",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
            }
        ],
    }


def test_surrogate_pairs_are_one_character() -> None:
    body = b'{"NextToken": "\\ud83d\\ude00"}'
    params = parse_json_request(_sm().operation_model("ListEndpoints"), body)
    assert params == {"NextToken": "\U0001f600"}


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{", "not valid JSON"),
        (b'{"EndpointName": "a",}', "not valid JSON"),
        (b"\xff\xfe{", "not valid UTF-8"),
        (b'{"EndpointName": "a\xed\xa0\x80"}', "not valid UTF-8"),
        (b'{"EndpointName": "a\\ud800"}', "not valid Unicode"),
        (b'{"Tags": [{"Key": "k", "Value": "v"}], "x\\udfff": 1}', "not valid Unicode"),
        (b'{"EndpointName": NaN}', "not valid JSON"),
        (b'{"EndpointName": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b"[]", "must be a JSON object"),
        (b'"DescribeEndpoint"', "must be a JSON object"),
        (b'{"EndpointName": 7}', "Value '7' at 'endpointName' is not a string."),
        (b'{"EndpointName": {"a": 1}}', "at 'endpointName' is not a string."),
    ],
)
def test_unreadable_bodies_are_serialization_errors(body: bytes, text: str) -> None:
    with pytest.raises(SerializationException) as info:
        parse_json_request(_sm().operation_model("DescribeEndpoint"), body)
    assert text in info.value.message


@pytest.mark.parametrize(
    ("operation_name", "body", "text"),
    [
        (
            "CreateEndpoint",
            {"EndpointName": "e", "EndpointConfigName": "c", "Tags": {"k": "v"}},
            "'tags' is not a list",
        ),
        ("ListEndpoints", {"MaxResults": "10"}, "'maxResults' is not an integer"),
        ("ListEndpoints", {"MaxResults": True}, "'maxResults' is not an integer"),
        ("ListEndpoints", {"CreationTimeAfter": "yesterday"}, "'creationTimeAfter' is not a timestamp"),
        (
            "UpdateEndpoint",
            {"EndpointName": "e", "EndpointConfigName": "c", "RetainAllVariantProperties": 1},
            "'retainAllVariantProperties' is not a boolean",
        ),
    ],
)
def test_wrong_json_types(operation_name: str, body: dict[str, Any], text: str) -> None:
    with pytest.raises(SerializationException) as info:
        parse_json_request(_sm().operation_model(operation_name), json.dumps(body).encode())
    assert text in info.value.message


def test_integral_floats_are_integers_and_integers_are_floats_where_modelled() -> None:
    body = {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [
            {
                "VariantName": "v",
                "ModelName": "m",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 2.0,
                "InitialVariantWeight": 1,
            },
        ],
    }
    parsed = parse_json_request(_sm().operation_model("CreateEndpointConfig"), json.dumps(body).encode())
    variant = parsed["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == 2 and type(variant["InitialInstanceCount"]) is int
    assert variant["InitialVariantWeight"] == 1.0 and type(variant["InitialVariantWeight"]) is float


@pytest.mark.parametrize("body", [b"", b"  \n", b"{}"])
def test_empty_body_is_an_empty_object(body: bytes) -> None:
    assert parse_json_request(_sm().operation_model("ListEndpoints"), body) == {}


def test_empty_body_still_needs_required_members() -> None:
    with pytest.raises(ValidationException) as info:
        parse_json_request(_sm().operation_model("DescribeEndpoint"), b"")
    assert info.value.message == (
        "1 validation error detected: Value null at 'endpointName' failed to satisfy constraint: "
        "Member must not be null"
    )


@pytest.mark.parametrize(
    ("service", "target", "operation_name"),
    [
        ("sagemaker", "SageMaker.CreateEndpoint", "CreateEndpoint"),
        ("sagemaker", "SageMaker.DescribeEndpoint", "DescribeEndpoint"),
        (
            "application-autoscaling",
            "AnyScaleFrontendService.RegisterScalableTarget",
            "RegisterScalableTarget",
        ),
    ],
)
def test_operation_for_target(service: str, target: str, operation_name: str) -> None:
    assert operation_for_target(load_service(service), target).name == operation_name


@pytest.mark.parametrize(
    "target",
    [
        "SageMaker.NoSuchOperation",
        "sagemaker.CreateEndpoint",
        "AnyScaleFrontendService.CreateEndpoint",
        "SageMaker",
        "SageMaker.",
        "CreateEndpoint",
        "",
    ],
)
def test_unknown_targets(target: str) -> None:
    with pytest.raises(UnknownOperationException):
        operation_for_target(_sm(), target)


DESCRIBE_ENDPOINT: dict[str, Any] = {
    "EndpointName": "recommender",
    "EndpointArn": f"{ARN}:endpoint/recommender",
    "EndpointConfigName": "recommender-config",
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "DeployedImages": [
                {
                    "SpecifiedImage": "moorage/serving:latest",
                    "ResolvedImage": "moorage/serving@sha256:ab",
                    "ResolutionTime": T0,
                },
            ],
            "CurrentWeight": 0.75,
            "DesiredWeight": 0.75,
            "CurrentInstanceCount": 2,
            "DesiredInstanceCount": 2,
            "VariantStatus": [{"Status": "Creating", "StatusMessage": "starting", "StartTime": T0}],
        },
        {
            "VariantName": "Serverless",
            "CurrentWeight": 0.25,
            "DesiredWeight": 0.25,
            "CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
        },
    ],
    "EndpointStatus": "InService",
    "CreationTime": T0,
    "LastModifiedTime": T1,
}

RESPONSES: list[tuple[str, dict[str, Any]]] = [
    ("DescribeEndpoint", DESCRIBE_ENDPOINT),
    (
        "ListModels",
        {
            "Models": [
                {
                    "ModelName": f"model-{i}",
                    "ModelArn": f"{ARN}:model/model-{i}",
                    "CreationTime": T0 + timedelta(i),
                }
                for i in range(3)
            ],
            "NextToken": "eyJvZmZzZXQiOiAzfQ==",
        },
    ),
    ("CreateModel", {"ModelArn": f"{ARN}:model/recommender-v2"}),
    ("ListEndpoints", {"Endpoints": []}),
]


def _botocore_parse(operation_name: str, body: bytes) -> dict[str, Any]:
    operation = _sm().operation_model(operation_name)
    response = {"status_code": 200, "headers": {"x-amzn-requestid": "rid"}, "body": body}
    parsed: dict[str, Any] = create_parser("json").parse(response, operation.output_shape)
    assert parsed.pop("ResponseMetadata")["RequestId"] == "rid"
    return parsed


@pytest.mark.parametrize(("operation_name", "result"), RESPONSES, ids=[r[0] for r in RESPONSES])
def test_serialized_response_parses_back_in_botocore(operation_name: str, result: dict[str, Any]) -> None:
    body = serialize_json_response(_sm().operation_model(operation_name), result)
    assert _botocore_parse(operation_name, body) == result


def test_serializer_keeps_only_modelled_members_and_drops_none() -> None:
    record = {
        **DESCRIBE_ENDPOINT,
        "FailureReason": None,
        "internal_state": {"workers": 3},
        "ProductionVariants": [
            {**DESCRIBE_ENDPOINT["ProductionVariants"][1], "pid": 1234, "DesiredWeight": None}
        ],
    }
    wire = json.loads(serialize_json_response(_sm().operation_model("DescribeEndpoint"), record))
    assert "internal_state" not in wire and "FailureReason" not in wire
    assert wire["ProductionVariants"] == [
        {
            "VariantName": "Serverless",
            "CurrentWeight": 0.25,
            "CurrentServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
        }
    ]


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=UTC), 1715938215.123),
        (datetime(2024, 5, 17, 11, 30, 15, 500000, tzinfo=timezone(timedelta(hours=2))), 1715938215.5),
        (datetime(2024, 5, 17, 9, 30, 15), 1715938215.0),  # naive means UTC
        (1715938215.1234567, 1715938215.123),
        (1715938215, 1715938215),
    ],
)
def test_timestamps_are_epoch_seconds_with_milliseconds(value: Any, wire: float) -> None:
    body = serialize_json_response(
        _sm().operation_model("ListModels"),
        {"Models": [{"ModelName": "m", "ModelArn": f"{ARN}:model/m", "CreationTime": value}]},
    )
    assert json.loads(body)["Models"][0]["CreationTime"] == wire


@pytest.mark.parametrize("operation_name", ["DeleteModel", "DeleteEndpoint", "DeleteEndpointConfig"])
def test_operations_without_output_answer_an_empty_object(operation_name: str) -> None:
    assert serialize_json_response(_sm().operation_model(operation_name), {"anything": 1}) == b"{}"


# SageMaker's control plane has no blob members; a small model proves blobs, maps and nesting both ways.
_ECHO = ServiceModel(
    {
        "metadata": {
            "protocol": "json",
            "jsonVersion": "1.1",
            "targetPrefix": "Echo",
            "apiVersion": "2024-01-01",
            "endpointPrefix": "echo",
            "serviceId": "Echo",
            "signatureVersion": "v4",
        },
        "operations": {
            "Echo": {
                "name": "Echo",
                "http": {"method": "POST", "requestUri": "/"},
                "input": {"shape": "Payload"},
                "output": {"shape": "Payload"},
            },
        },
        "shapes": {
            "Payload": {
                "type": "structure",
                "members": {
                    "Data": {"shape": "Data"},
                    "Chunks": {"shape": "Chunks"},
                    "Seen": {"shape": "Seen"},
                    "Nested": {"shape": "Payload"},
                },
            },
            "Data": {"type": "blob", "max": 8},
            "Chunks": {"type": "list", "member": {"shape": "Data"}},
            "Seen": {"type": "map", "key": {"shape": "Key"}, "value": {"shape": "When"}},
            "Key": {"type": "string"},
            "When": {"type": "timestamp"},
        },
    },
    service_name="echo",
)


def test_blobs_maps_and_recursion_round_trip_both_ways() -> None:
    params = {
        "Data": b"\x00\x01raw",
        "Chunks": [b"a", b"\xff"],
        # botocore sends whole seconds in requests
        "Nested": {
            "Seen": {"first": T0.replace(microsecond=0), "last": T1.replace(microsecond=0)},
            "Data": b"x",
        },
    }
    operation = _ECHO.operation_model("Echo")
    request = create_serializer("json").serialize_to_request(params, operation)
    assert parse_json_request(operation, request["body"]) == params
    body = serialize_json_response(operation, params)
    response = {"status_code": 200, "headers": {}, "body": body}
    parsed = create_parser("json").parse(response, operation.output_shape)
    parsed.pop("ResponseMetadata")
    assert parsed == params


def test_blob_constraints_apply_to_decoded_bytes() -> None:
    operation = _ECHO.operation_model("Echo")
    with pytest.raises(SerializationException, match="'data' is not base64-encoded data"):
        parse_json_request(operation, b'{"Data": "not base64!"}')
    with pytest.raises(
        ValidationException, match="at 'data' failed to satisfy constraint: Member must have length"
    ):
        parse_json_request(operation, json.dumps({"Data": "AAAAAAAAAAAA"}).encode())  # 9 bytes > 8


def test_deeply_nested_value_in_a_string_member_is_a_serialization_error() -> None:
    nested: Any = "x"
    for _ in range(450):
        nested = [nested]
    body = json.dumps({"ModelName": nested}).encode()
    with pytest.raises(SerializationException) as info:
        parse_json_request(_sm().operation_model("DescribeModel"), body)
    assert "modelName" in info.value.message and "..." in info.value.message


def test_integer_beyond_any_double_is_a_serialization_error() -> None:
    variant = {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    body = json.dumps(
        {"EndpointConfigName": "c", "ProductionVariants": [{**variant, "InitialVariantWeight": 10**400}]}
    ).encode()
    with pytest.raises(SerializationException):
        parse_json_request(_sm().operation_model("CreateEndpointConfig"), body)
