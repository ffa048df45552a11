"""Constraint checks botocore skips, with AWS's wording, path style and counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.api.json_protocol import parse_json_request
from moorage.api.spec import load_service
from moorage.api.validate import validate_members, validation_message

ONE = "1 validation error detected: "
NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
PATTERN = "Member must satisfy regular expression pattern: "
LE_63 = "Member must have length less than or equal to 63"
NOT_NULL = "Member must not be null"
SERVERLESS = {
    "VariantName": "s",
    "ModelName": "m",
    "ServerlessConfig": {"MemorySizeInMB": 10240, "MaxConcurrency": 1},
}
BIG = "x" * 1025


def _v(value: str, path: str, constraint: str) -> str:
    """One problem as AWS prints it; ``value`` already rendered (quoted, or null)."""
    return f"Value {value} at '{path}' failed to satisfy constraint: {constraint}"


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
        ONE + _v("'abc!'", "endpointName", PATTERN + NAME_PATTERN),
    ),
    ("max length", "CreateModel", {"ModelName": "m" * 64}, ONE + _v(f"'{'m' * 64}'", "modelName", LE_63)),
    (
        "max length and pattern",
        "DescribeEndpoint",
        {"EndpointName": "e" * 64},
        "2 validation errors detected: "
        + _v(f"'{'e' * 64}'", "endpointName", LE_63)
        + "; "
        + _v(f"'{'e' * 64}'", "endpointName", PATTERN + NAME_PATTERN),
    ),
    ("required", "CreateEndpoint", {"EndpointName": "e"}, ONE + _v("null", "endpointConfigName", NOT_NULL)),
    (
        "short enum",
        "ListEndpoints",
        {"SortOrder": "Down"},
        ONE + _v("'Down'", "sortOrder", "Member must satisfy enum value set: [Ascending, Descending]"),
    ),
    (
        "min value in a list member",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [_variant(InitialInstanceCount=0)]},
        ONE
        + _v(
            "'0'",
            "productionVariants.1.member.initialInstanceCount",
            "Member must have value greater than or equal to 1",
        ),
    ),
    (
        "max value, two levels down",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [_variant(), SERVERLESS]},
        ONE
        + _v(
            "'10240'",
            "productionVariants.2.member.serverlessConfig.memorySizeInMB",
            "Member must have value less than or equal to 6144",
        ),
    ),
    (
        "required inside the second list entry",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [_variant(), {"ModelName": "m"}]},
        ONE + _v("null", "productionVariants.2.member.variantName", NOT_NULL),
    ),
    (
        "list length",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": []},
        ONE + _v("'[]'", "productionVariants", "Member must have length greater than or equal to 1"),
    ),
    (
        "list of strings, reported once at the list",
        "CreateModel",
        {
            "ModelName": "m",
            "VpcConfig": {"SecurityGroupIds": ["sg-1", "sg_2", "sg_3"], "Subnets": ["subnet-1"]},
        },
        ONE
        + _v(
            "'[sg-1, sg_2, sg_3]'",
            "vpcConfig.securityGroupIds",
            f"Member must satisfy constraint: [{PATTERN}^[-0-9a-zA-Z]+]",
        ),
    ),
    (
        "map keys",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {"Environment": {"OK": "1", "1BAD": "2"}}},
        ONE
        + _v(
            "'{OK=1, 1BAD=2}'",
            "primaryContainer.environment",
            f"Map keys must satisfy constraint: [{PATTERN}^[a-zA-Z_][a-zA-Z0-9_]*]",
        ),
    ),
    (
        "map values",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {"Environment": {"BIG": BIG}}},
        ONE
        + _v(
            f"'{{BIG={BIG[:92]}...'",
            "primaryContainer.environment",
            "Map value must satisfy constraint: [Member must have length less than or equal to 1024]",
        ),
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
    head = _v(
        "'ml.m5.largee'",
        "productionVariants.1.member.instanceType",
        "Member must satisfy enum value set: [ml.t2.medium, ",
    )
    assert message.startswith(ONE + head)
    assert message.endswith(" more]")
    assert len(message) < 400


def test_a_real_enum_member_passes() -> None:
    operation = load_service("sagemaker").operation_model("CreateEndpointConfig")
    body = {"EndpointConfigName": "c", "ProductionVariants": [_variant(InstanceType="ml.g5.xlarge")]}
    assert parse_json_request(operation, json.dumps(body).encode()) == body


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
    message = _problems("DescribeEndpoint", {"EndpointName": "x" * 5000})  # too long, and no pattern match
    assert message.count(f"Value '{'x' * 97}...' at 'endpointName'") == 2
    assert len(message) < 500


def test_unknown_members_are_not_errors() -> None:
    operation = load_service("sagemaker").operation_model("DescribeEndpoint")
    body = b'{"EndpointName": "e", "endpointName": "!!", "New": 1}'
    assert parse_json_request(operation, body) == {"EndpointName": "e"}


def test_unicode_category_patterns_are_enforced() -> None:
    # Tag keys use Java Unicode classes (\p{L}, \p{Z}, \p{N}): letters of any script pass ...
    operation = load_service("sagemaker").operation_model("CreateEndpoint")
    body = {"EndpointName": "e", "EndpointConfigName": "c", "Tags": [{"Key": "équipe 1", "Value": "数据"}]}
    assert parse_json_request(operation, json.dumps(body).encode()) == body
    # ... control characters and punctuation outside the set do not
    message = _problems(
        "CreateEndpoint",
        {"EndpointName": "e", "EndpointConfigName": "c", "Tags": [{"Key": "k\u0000", "Value": "v"}]},
    )
    assert "tags.1.member.key" in message and "regular expression pattern" in message


RUNTIME_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("minimal", {"EndpointName": "ep", "Body": b"x"}, []),
    ("headers", {"EndpointName": "ep", "Body": b"x", "InferenceId": "id 1", "TargetModel": "a/b.tar.gz"}, []),
    ("no body", {"EndpointName": "ep"}, [_v("null", "body", NOT_NULL)]),
    (
        "java pattern translated",
        {"EndpointName": "ep", "Body": b"x", "InferenceId": " lead"},
        [_v("' lead'", "inferenceId", PATTERN + r"\A\S[\p{Print}]*\z")],
    ),
    (
        "6 MiB",
        {"EndpointName": "ep", "Body": b"x" * (6 * 1024 * 1024 + 1)},
        [_v("'<6291457 bytes>'", "body", "Member must have length less than or equal to 6291456")],
    ),
    (
        "ascii header",
        {"EndpointName": "ep", "Body": b"x", "CustomAttributes": "é"},
        [_v("'é'", "customAttributes", PATTERN + r"^\p{ASCII}*")],
    ),
    (
        "typed values only",
        {"EndpointName": "ep", "Body": "text"},
        [_v("'text'", "body", "Member must be binary data")],
    ),
]


@pytest.mark.parametrize(
    ("params", "problems"), [c[1:] for c in RUNTIME_CASES], ids=[c[0] for c in RUNTIME_CASES]
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
