"""Rendered errors as botocore reads them: the right code, message, status and modelled fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from moorage.api import errors
from moorage.api.errors import AwsError, ModelError, render_error
from moorage.api.spec import load_service

AMZ_JSON = "application/x-amz-json-1.1"
LOG_STREAM = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep"

CLASSES: list[tuple[type[AwsError], str, int]] = [
    (errors.ValidationException, "ValidationException", 400),
    (errors.ResourceLimitExceeded, "ResourceLimitExceeded", 400),
    (errors.ResourceInUse, "ResourceInUse", 400),
    (errors.ResourceNotFound, "ResourceNotFound", 400),
    (errors.SerializationException, "SerializationException", 400),
    (errors.UnknownOperationException, "UnknownOperationException", 400),
    (errors.ThrottlingException, "ThrottlingException", 400),
    (errors.IncompleteSignature, "IncompleteSignature", 400),
    (errors.InvalidSignatureException, "InvalidSignatureException", 403),
    (errors.UnrecognizedClientException, "UnrecognizedClientException", 403),
    (errors.AccessDeniedException, "AccessDeniedException", 400),
    (errors.InternalFailure, "InternalFailure", 500),
    (errors.ServiceUnavailable, "ServiceUnavailable", 503),
    (errors.NotImplementedOperation, "NotImplemented", 501),
    (errors.ValidationError, "ValidationError", 400),
    (errors.ModelNotReadyException, "ModelNotReadyException", 429),
    (errors.InternalDependencyException, "InternalDependencyException", 530),
]


def _model_error(status: int = 404) -> ModelError:
    return ModelError(
        f'Received client error ({status}) from primary with message "no such item".',
        original_status_code=status,
        original_message="no such item",
        log_stream_arn=LOG_STREAM,
    )


def _wire(err: AwsError, content_type: str = AMZ_JSON) -> dict[str, Any]:
    status, headers, body = render_error(err, "req-1", json_content_type=content_type)
    return {"status_code": status, "headers": {k.decode(): v.decode() for k, v in headers}, "body": body}


@pytest.mark.parametrize(("cls", "code", "status"), CLASSES, ids=[c[1] for c in CLASSES])
def test_botocore_json_parser_reads_code_and_message(cls: type[AwsError], code: str, status: int) -> None:
    response = _wire(cls("Something specific went wrong."))
    assert response["status_code"] == status
    parsed = create_parser("json").parse(response, None)
    assert parsed["Error"] == {"Code": code, "Message": "Something specific went wrong."}
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"


def test_rendered_headers() -> None:
    status, headers, body = render_error(_model_error(), "req-9", json_content_type="application/json")
    assert status == 424
    assert dict(headers) == {
        b"content-type": b"application/json",
        b"x-amzn-requestid": b"req-9",
        b"x-amzn-errortype": b"ModelError",
        b"content-length": str(len(body)).encode(),
    }
    assert json.loads(body) == {
        "__type": "ModelError",
        "Message": 'Received client error (404) from primary with message "no such item".',
        "OriginalStatusCode": 404,
        "OriginalMessage": "no such item",
        "LogStreamArn": LOG_STREAM,
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
    }


def test_rest_json_parser_reads_model_error() -> None:
    operation = load_service("sagemaker-runtime").operation_model("InvokeEndpoint")
    response = _wire(_model_error(), "application/json")
    parsed = create_parser("rest-json").parse(response, operation.output_shape)
    assert parsed["Error"]["Code"] == "ModelError"
    fields = create_parser("rest-json").parse(
        response, load_service("sagemaker-runtime").shape_for("ModelError")
    )
    assert fields["OriginalStatusCode"] == 404
    assert fields["LogStreamArn"] == LOG_STREAM


@pytest.mark.parametrize(
    ("status", "error_code", "expected"),
    [
        (404, None, "CLIENT_ERROR_FROM_MODEL"),
        (500, None, "SERVER_ERROR_FROM_MODEL"),
        (0, None, "SERVER_ERROR_FROM_MODEL"),
        (0, "ModelInvocationTimeExceeded", "ModelInvocationTimeExceeded"),
    ],
)
def test_model_error_code(status: int, error_code: str | None, expected: str) -> None:
    err = ModelError(
        "m", original_status_code=status, original_message="", log_stream_arn="", error_code=error_code
    )
    assert err.fields["ErrorCode"] == expected
    assert err.fields["OriginalStatusCode"] == status


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def _client(service: str, err: AwsError, content_type: str, calls: list[str] | None = None) -> BaseClient:
    """A real botocore client whose every request is answered with ``err`` as rendered here."""
    client = botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url="http://moorage.invalid",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"mode": "standard"}),
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        if calls is not None:
            calls.append(request.url)
        status, headers, body = render_error(err, "req-1", json_content_type=content_type)
        return AWSResponse(request.url, status, {k.decode(): v.decode() for k, v in headers}, _Raw(body))

    client.meta.events.register("before-send", answer)
    return client


def test_boto3_raises_modelled_model_error_with_its_fields() -> None:
    client: Any = _client("sagemaker-runtime", _model_error(), "application/json")
    with pytest.raises(client.exceptions.ModelError) as info:
        client.invoke_endpoint(EndpointName="ep", Body=b"{}", ContentType="application/json")
    response = info.value.response
    assert response["Error"]["Code"] == "ModelError"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 404
    assert response["OriginalMessage"] == "no such item"
    assert response["LogStreamArn"] == LOG_STREAM


@pytest.mark.parametrize(
    ("err", "name"),
    [
        (errors.ValidationError("Endpoint ep of account 123456789012 not found."), "ValidationError"),
        (errors.ModelNotReadyException("Model is loading."), "ModelNotReadyException"),
        (errors.InternalDependencyException("Dependency failed."), "InternalDependencyException"),
    ],
)
def test_boto3_raises_modelled_runtime_errors(err: AwsError, name: str) -> None:
    client: Any = _client("sagemaker-runtime", err, "application/json")
    with pytest.raises(getattr(client.exceptions, name)) as info:
        client.invoke_endpoint(EndpointName="ep", Body=b"{}")
    assert info.value.response["Error"]["Message"] == err.message


def test_boto3_control_plane_errors() -> None:
    message = errors.not_found("endpoint", "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep")
    client: Any = _client("sagemaker", errors.ValidationException(message), AMZ_JSON)
    with pytest.raises(ClientError) as info:
        client.describe_endpoint(EndpointName="ep")
    assert info.value.response["Error"] == {"Code": "ValidationException", "Message": message}
    client = _client("sagemaker", errors.ResourceLimitExceeded("Too many endpoints."), AMZ_JSON)
    with pytest.raises(client.exceptions.ResourceLimitExceeded):
        client.create_endpoint(EndpointName="ep", EndpointConfigName="cfg")


def test_not_implemented_is_not_retried() -> None:
    calls: list[str] = []
    client: Any = _client("sagemaker", errors.NotImplementedOperation("Not built."), AMZ_JSON, calls)
    with pytest.raises(ClientError) as info:
        client.describe_training_job(TrainingJobName="job")
    assert info.value.response["Error"]["Code"] == "NotImplemented"
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("helper", "kind", "arn", "text"),
    [
        (
            errors.not_found,
            "endpoint",
            "arn:aws:sagemaker:us-west-2:123456789012:endpoint/ep",
            'Could not find endpoint "arn:aws:sagemaker:us-west-2:123456789012:endpoint/ep".',
        ),
        (
            errors.not_found,
            "endpoint configuration",
            "arn:x",
            'Could not find endpoint configuration "arn:x".',
        ),
        (errors.not_found, "model", "arn:x", 'Could not find model "arn:x".'),
        (errors.already_exists, "model", "arn:x", 'Cannot create already existing model "arn:x".'),
        (
            errors.already_exists,
            "endpoint configuration",
            "arn:x",
            'Cannot create already existing endpoint configuration "arn:x".',
        ),
        (errors.already_exists, "endpoint", "arn:x", 'Cannot create already existing endpoint "arn:x".'),
    ],
)
def test_message_wording(helper: Any, kind: str, arn: str, text: str) -> None:
    assert helper(kind, arn) == text


def test_repr_and_str() -> None:
    err = errors.ValidationError("bad")
    assert str(err) == "bad"
    assert repr(err) == "ValidationError(code='ValidationError', status=400, message='bad')"
