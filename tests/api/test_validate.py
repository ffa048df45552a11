"""Constraint checks botocore skips, with AWS's wording, path style and counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.api.json_protocol import parse_json_request
from moorage.api.spec import load_service
from moorage.api.validate import validate_members, validation_message

NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
CONSTRAINT = "failed to satisfy constraint: Member must"


def _variant(**overrides: Any) -> dict[str, Any]:
    return {
        "VariantName": "v",
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        **overrides,
    }


def _problems(operation_name: str, body: dict[str, Any]) -> str:
    operation = load_service("sagemaker").operation_model(operation_name)
    with pytest.raises(ValidationException) as info:
        parse_json_request(operation, json.dumps(body).encode())
    assert info.value.code == "ValidationException" and info.value.status == 400
    return info.value.message


CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "pattern",
        "CreateEndpoint",
        {"EndpointName": "abc!", "EndpointConfigName": "c"},
        f"1 validation error detected: Value 'abc!' at 'endpointName' {CONSTRAINT} satisfy regular expression "
        f"pattern: {NAME_PATTERN}",
    ),
    (
        "max length",
        "CreateModel",
        {"ModelName": "m" * 64},
        f"1 validation error detected: Value '{'m' * 64}' at 'modelName' {CONSTRAINT} have length less than or "
        "equal to 63",
    ),
    (
        "max length and pattern",
        "DescribeEndpoint",
        {"EndpointName": "e" * 64},
        f"2 validation errors detected: Value '{'e' * 64}' at 'endpointName' {CONSTRAINT} have length less than "
        f"or equal to 63; Value '{'e' * 64}' at 'endpointName' {CONSTRAINT} satisfy regular expression pattern: "
        f"{NAME_PATTERN}",
    ),
    (
        "required",
        "CreateEndpoint",
        {"EndpointName": "e"},
        f"1 validation error detected: Value null at 'endpointConfigName' {CONSTRAINT} not be null",
    ),
    (
        "short enum",
        "ListEndpoints",
        {"SortOrder": "Down"},
        f"1 validation error detected: Value 'Down' at 'sortOrder' {CONSTRAINT} satisfy enum value set: "
        "[Ascending, Descending]",
    ),
    (
        "min value in a list member",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [_variant(InitialInstanceCount=0)]},
        "1 validation error detected: Value '0' at 'productionVariants.1.member.initialInstanceCount' "
        f"{CONSTRAINT} have value greater than or equal to 1",
    ),
    (
        "max value, nested two deep",
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [
                _variant(),
                {
                    "VariantName": "s",
                    "ModelName": "m",
                    "ServerlessConfig": {"MemorySizeInMB": 10240, "MaxConcurrency": 1},
                },
            ],
        },
        "1 validation error detected: Value '10240' at 'productionVariants.2.member.serverlessConfig.memorySizeInMB' "
        f"{CONSTRAINT} have value less than or equal to 6144",
    ),
    (
        "required inside the second list entry",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [_variant(), {"ModelName": "m"}]},
        f"1 validation error detected: Value null at 'productionVariants.2.member.variantName' {CONSTRAINT} not be null",
    ),
    (
        "list length",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": []},
        f"1 validation error detected: Value '[]' at 'productionVariants' {CONSTRAINT} have length greater than or "
        "equal to 1",
    ),
    (
        "list of strings, reported once at the list",
        "CreateModel",
        {
            "ModelName": "m",
            "VpcConfig": {"SecurityGroupIds": ["sg-1", "sg_2", "sg_3"], "Subnets": ["subnet-1"]},
        },
        "1 validation error detected: Value '[sg-1, sg_2, sg_3]' at 'vpcConfig.securityGroupIds' failed to satisfy "
        "constraint: Member must satisfy constraint: [Member must satisfy regular expression pattern: ^[-0-9a-zA-Z]+]",
    ),
    (
        "map keys",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {"Environment": {"OK": "1", "1BAD": "2"}}},
        "1 validation error detected: Value '{OK=1, 1BAD=2}' at 'primaryContainer.environment' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "
        "^[a-zA-Z_][a-zA-Z0-9_]*]",
    ),
    (
        "map values",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {"Environment": {"BIG": "x" * 1025}}},
        "1 validation error detected: Value '{BIG=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxx...' at 'primaryContainer.environment' failed to satisfy constraint: Map value must "
        "satisfy constraint: [Member must have length less than or equal to 1024]",
    ),
]


@pytest.mark.parametrize(
    ("operation_name", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_messages(operation_name: str, body: dict[str, Any], expected: str) -> None:
    assert _problems(operation_name, body) == expected


def test_long_enum_sets_are_shortened() -> None:
    message = _problems(
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [_variant(InstanceType="ml.m5.largee")]},
    )
    head = (
        "1 validation error detected: Value 'ml.m5.largee' at 'productionVariants.1.member.instanceType' "
        f"{CONSTRAINT} satisfy enum value set: [ml.t2.medium, "
    )
    assert message.startswith(head)
    assert message.endswith(" more]")
    assert len(message) < 400


def test_a_real_enum_member_passes() -> None:
    operation = load_service("sagemaker").operation_model("CreateEndpointConfig")
    body = {"EndpointConfigName": "c", "ProductionVariants": [_variant(InstanceType="ml.g5.xlarge")]}
    assert parse_json_request(operation, json.dumps(body).encode())["ProductionVariants"][0][
        "InstanceType"
    ] == ("ml.g5.xlarge")


def test_several_errors_are_counted_and_joined() -> None:
    message = _problems(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "bad_name",
            "ProductionVariants": [_variant(VariantName="bad_variant", InitialInstanceCount=0)],
        },
    )
    assert message.startswith("3 validation errors detected: Value 'bad_name' at 'endpointConfigName' ")
    assert message.count("; ") == 2
    assert "at 'productionVariants.1.member.variantName'" in message
    assert "at 'productionVariants.1.member.initialInstanceCount'" in message


def test_long_values_are_truncated() -> None:
    message = _problems("DescribeEndpoint", {"EndpointName": "x" * 5000})
    assert f"Value '{'x' * 97}...' at 'endpointName'" in message
    assert len(message) < 400


def test_unknown_members_are_not_errors() -> None:
    operation = load_service("sagemaker").operation_model("DescribeEndpoint")
    assert parse_json_request(operation, b'{"EndpointName": "e", "endpointName": "!!", "New": 1}') == {
        "EndpointName": "e"
    }


def test_patterns_python_cannot_compile_are_skipped() -> None:
    # Tag keys use Java Unicode classes (\p{L}); they are not checked rather than wrongly refused.
    operation = load_service("sagemaker").operation_model("CreateEndpoint")
    body = {"EndpointName": "e", "EndpointConfigName": "c", "Tags": [{"Key": "équipe", "Value": "数据"}]}
    assert parse_json_request(operation, json.dumps(body).encode()) == body


@pytest.mark.parametrize(
    ("params", "problems"),
    [
        ({"EndpointName": "ep", "Body": b"x"}, []),
        ({"EndpointName": "ep", "Body": b"x", "InferenceId": "id 1", "TargetModel": "a/b.tar.gz"}, []),
        ({"EndpointName": "ep"}, [f"Value null at 'body' {CONSTRAINT} not be null"]),
        (
            {"EndpointName": "ep", "Body": b"x", "InferenceId": " lead"},
            [
                f"Value ' lead' at 'inferenceId' {CONSTRAINT} satisfy regular expression pattern: \\A\\S[\\p{{Print}}]*\\z"
            ],
        ),
        (
            {"EndpointName": "ep", "Body": b"x" * (6 * 1024 * 1024 + 1)},
            [f"Value '<6291457 bytes>' at 'body' {CONSTRAINT} have length less than or equal to 6291456"],
        ),
        (
            {"EndpointName": "ep", "Body": b"x", "CustomAttributes": "é"},
            [
                f"Value 'é' at 'customAttributes' {CONSTRAINT} satisfy regular expression pattern: ^\\p{{ASCII}}*"
            ],
        ),
        ({"EndpointName": "ep", "Body": "text"}, [f"Value 'text' at 'body' {CONSTRAINT} be binary data"]),
    ],
)
def test_validate_members_for_runtime_headers(params: dict[str, Any], problems: list[str]) -> None:
    shape = load_service("sagemaker-runtime").operation_model("InvokeEndpoint").input_shape
    assert validate_members(shape, params) == problems


@pytest.mark.parametrize(
    ("problems", "message"),
    [
        (["a"], "1 validation error detected: a"),
        (["a", "b"], "2 validation errors detected: a; b"),
        ([str(i) for i in range(12)], "12 validation errors detected: 0; 1; 2; 3; 4; 5; 6; 7; 8; 9; ..."),
    ],
)
def test_validation_message(problems: list[str], message: str) -> None:
    assert validation_message(problems) == message
