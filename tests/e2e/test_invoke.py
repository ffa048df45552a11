"""InvokeEndpoint fidelity: headers, limits, timeouts and ModelError shapes, through boto3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy, model_dir_tar
from tests.support.moorage_server import RunningServer

CONTEXT_INFERENCE = """
import json

def model_fn(model_dir, context):
    return {"dir": model_dir}

def transform_fn(model, body, content_type, accept, context):
    attrs = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "seen=" + str(attrs))
    return json.dumps({"content_type": content_type, "accept": accept, "body": body}), "application/json"
"""

DEFAULTS_INFERENCE = """
def model_fn(model_dir):
    return lambda data: data * 2
"""


@pytest.fixture(scope="module")
def echo_endpoint(sm: Any, echo_model: str) -> str:
    return deploy(sm, echo_model, environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"})


def test_user_exception_is_model_error_without_traceback(
    smr: Any, echo_endpoint: str, server: RunningServer
) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=json.dumps({"crash": "kaput"}), ContentType="application/json"
        )
    response = raised.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 500
    assert "boom: kaput" in response["OriginalMessage"]
    assert "Traceback" not in response["Error"]["Message"]
    assert response["Error"]["Message"].startswith("Received server error (500) from primary")
    assert response["LogStreamArn"].endswith(f"/aws/sagemaker/Endpoints/{echo_endpoint}")
    log = (server.state_dir / "logs" / f"{echo_endpoint}.log").read_text()
    assert "Traceback" in log and "boom: kaput" in log


def test_client_error_status_from_handler(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(EndpointName=echo_endpoint, Body=b"a,b", ContentType="text/csv")
    assert raised.value.response["OriginalStatusCode"] == 415
    assert raised.value.response["Error"]["Message"].startswith("Received client error (415)")


def test_body_over_six_mib_is_refused_before_the_instance(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=b"0" * (6 * 1024 * 1024 + 1), ContentType="application/json"
        )
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert raised.value.response["Error"]["Message"] == "HTTP content length exceeded 6291456 bytes."
    ok = smr.invoke_endpoint(
        EndpointName=echo_endpoint, Body=json.dumps({"after": 1}), ContentType="application/json"
    )
    assert json.loads(ok["Body"].read())["echo"] == {"after": 1}


def test_body_over_the_front_door_limit_gets_the_same_413(smr: Any, echo_endpoint: str) -> None:
    """Past 16 MiB the front door stops buffering, yet boto3 still reads AWS's 413, not a reset."""
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=b"0" * (17 * 1024 * 1024), ContentType="application/json"
        )
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert raised.value.response["Error"]["Message"] == "HTTP content length exceeded 6291456 bytes."


def test_timeout_is_model_error_zero_and_worker_is_replaced(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=json.dumps({"sleep": 30}), ContentType="application/json"
        )
    response = raised.value.response
    assert response["OriginalStatusCode"] == 0
    assert (
        "Your invocation timed out while waiting for a response from container primary"
        in response["Error"]["Message"]
    )
    after = smr.invoke_endpoint(
        EndpointName=echo_endpoint, Body=json.dumps({"n": 2}), ContentType="application/json"
    )
    assert json.loads(after["Body"].read())["echo"] == {"n": 2}


def test_unknown_endpoint_and_variant(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"{}", ContentType="application/json")
    assert (
        raised.value.response["Error"]["Message"]
        == "Endpoint no-such-endpoint of account 123456789012 not found."
    )
    with pytest.raises(smr.exceptions.ValidationError):
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=b"{}", ContentType="application/json", TargetVariant="nope"
        )
    ok = smr.invoke_endpoint(
        EndpointName=echo_endpoint, Body=b"{}", ContentType="application/json", TargetVariant="AllTraffic"
    )
    assert ok["InvokedProductionVariant"] == "AllTraffic"


def test_malformed_names_get_coral_validation_messages(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(EndpointName="bad_name!", Body=b"{}", ContentType="application/json")
    message = raised.value.response["Error"]["Message"]
    assert message.startswith("1 validation error detected: Value 'bad_name!' at 'endpointName'")
    assert "regular expression pattern" in message
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(EndpointName="e" * 64, Body=b"{}", ContentType="application/json")
    assert "length less than or equal to 63" in raised.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("member", "value", "header"),
    [
        ("InferenceComponentName", "ic1", "x-amzn-sagemaker-inference-component"),
        ("SessionId", "NEW_SESSION", "x-amzn-sagemaker-session-id"),
        ("EnableExplanations", "`true`", "x-amzn-sagemaker-enable-explanations"),
    ],
)
def test_routing_members_this_server_does_not_serve_are_refused(
    smr: Any, echo_endpoint: str, member: str, value: str, header: str
) -> None:
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=b"{}", ContentType="application/json", **{member: value}
        )
    message = raised.value.response["Error"]["Message"]
    assert member in message and header in message and echo_endpoint in message


def test_targets_on_a_single_model_endpoint_are_refused(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=b"{}", ContentType="application/json", TargetModel="a.tar.gz"
        )
    assert raised.value.response["Error"]["Message"].startswith(
        f"Endpoint {echo_endpoint} is not a multi-model endpoint and does not support target model header."
    )
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint,
            Body=b"{}",
            ContentType="application/json",
            TargetContainerHostname="c1",
        )
    message = raised.value.response["Error"]["Message"]
    assert echo_endpoint in message and "TargetContainerHostname" in message and "Direct" in message


def test_header_the_http_parser_refuses_is_a_validation_error(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(smr.exceptions.ValidationError) as raised:
        smr.invoke_endpoint(
            EndpointName=echo_endpoint, Body=b"{}", ContentType="application/json", CustomAttributes="a\x01b"
        )
    assert "not valid HTTP/1.1" in raised.value.response["Error"]["Message"]


def test_async_invocation_of_a_real_time_endpoint_and_streaming(smr: Any, echo_endpoint: str) -> None:
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint_async(EndpointName=echo_endpoint, InputLocation="s3://bucket/in.json")
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "is not an asynchronous endpoint" in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint_with_response_stream(EndpointName=echo_endpoint, Body=b"{}")
    assert raised.value.response["Error"]["Code"] == "NotImplemented"


def test_custom_attributes_and_context(sm: Any, smr: Any, tmp_path: Path) -> None:
    name = deploy(sm, model_dir_tar(tmp_path, "ctx", inference=CONTEXT_INFERENCE))
    response = smr.invoke_endpoint(
        EndpointName=name,
        Body=b"1,2",
        ContentType="text/csv",
        Accept="*/*",
        CustomAttributes="trace=abc",
        InferenceId="req-1",
    )
    assert response["CustomAttributes"] == "seen=trace=abc"
    answer = json.loads(response["Body"].read())
    assert answer == {"content_type": "text/csv", "accept": "application/json", "body": "1,2"}
    sm.delete_endpoint(EndpointName=name)


def test_default_handlers_and_unsupported_types(sm: Any, smr: Any, tmp_path: Path) -> None:
    name = deploy(sm, model_dir_tar(tmp_path, "defaults", inference=DEFAULTS_INFERENCE))
    response = smr.invoke_endpoint(EndpointName=name, Body=b"[1, 2, 3]", ContentType="application/json")
    assert json.loads(response["Body"].read()) == [2, 4, 6]
    csv = smr.invoke_endpoint(EndpointName=name, Body=b"1,2,3", ContentType="text/csv", Accept="text/csv")
    assert csv["ContentType"] == "text/csv"
    assert csv["Body"].read().split() == [b"2", b"4", b"6"]
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(EndpointName=name, Body=b"x", ContentType="application/x-unknown")
    assert raised.value.response["OriginalStatusCode"] == 415
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(
            EndpointName=name, Body=b"[1]", ContentType="application/json", Accept="image/png"
        )
    assert raised.value.response["OriginalStatusCode"] == 406
    sm.delete_endpoint(EndpointName=name)
