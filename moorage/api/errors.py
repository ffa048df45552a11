"""The one error hierarchy of the AWS-facing API, and the one place errors are rendered.

``code`` is the error shape name in botocore's model (or the AWS common error code), because botocore
maps exactly that string to ``client.exceptions.<Code>``. Control plane and runtime spell validation
differently (``ValidationException`` against ``ValidationError``); callers pick the one their service uses.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

Headers = list[tuple[bytes, bytes]]


class AwsError(Exception):
    """An error the client sees as ``{"__type": code, "Message": message, **fields}`` with ``status``."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500
    # False for the few answers AWS sends without an error type (boto3 then names the error by the
    # HTTP status): the renderer leaves out __type and x-amzn-ErrorType and writes "message".
    typed: ClassVar[bool] = True

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, message={self.message!r})"


# Control plane (awsJson1_1). Not-found and duplicates are ValidationException there, as on AWS.
class ValidationException(AwsError):
    code, status = "ValidationException", 400


class ResourceLimitExceeded(AwsError):
    code, status = "ResourceLimitExceeded", 400


class ResourceInUse(AwsError):
    code, status = "ResourceInUse", 400


class ResourceNotFound(AwsError):
    code, status = "ResourceNotFound", 400


class SerializationException(AwsError):
    """The body is not JSON, not an object, or a value has the wrong JSON type."""

    code, status = "SerializationException", 400


class UnknownOperationException(AwsError):
    """X-Amz-Target names no operation of the service."""

    code, status = "UnknownOperationException", 400


class UnknownPath(UnknownOperationException):
    """A path no API on the port serves (AWS's REST front ends answer 404 for these)."""

    status = 404


class RequestTimeout(AwsError):
    """The request did not fully arrive in time; botocore's standard retry mode retries this code."""

    code, status = "RequestTimeout", 408


class ThrottlingException(AwsError):
    code, status = "ThrottlingException", 400


# Authentication (AWS common errors), for whoever checks SigV4.
class IncompleteSignature(AwsError):
    code, status = "IncompleteSignature", 400


class InvalidSignatureException(AwsError):
    code, status = "InvalidSignatureException", 403


class UnrecognizedClientException(AwsError):
    code, status = "UnrecognizedClientException", 403


class AccessDeniedException(AwsError):
    code, status = "AccessDeniedException", 400


# Both services.
class InternalFailure(AwsError):
    code, status = "InternalFailure", 500


class ServiceUnavailable(AwsError):
    code, status = "ServiceUnavailable", 503


class NotImplementedOperation(AwsError):
    """An operation the model defines but Moorage does not serve.

    501 with code ``NotImplemented`` (S3's spelling for the same case): boto3 shows ``ClientError: An error
    occurred (NotImplemented) ...`` and, unlike a 500 ``InternalFailure``, does not retry it.
    """

    code, status = "NotImplemented", 501


# Runtime (restJson1).
class ValidationError(AwsError):
    code, status = "ValidationError", 400


class ModelError(AwsError):
    """The container answered non-2xx, or not at all (``original_status_code`` 0). Never retried by SDKs."""

    code, status = "ModelError", 424

    def __init__(
        self,
        message: str,
        *,
        original_status_code: int,
        original_message: str,
        log_stream_arn: str,
        error_code: str | None = None,
    ) -> None:
        if error_code is None:
            error_code = (
                "CLIENT_ERROR_FROM_MODEL" if 400 <= original_status_code < 500 else "SERVER_ERROR_FROM_MODEL"
            )
        super().__init__(
            message,
            OriginalStatusCode=original_status_code,
            OriginalMessage=original_message,
            LogStreamArn=log_stream_arn,
            ErrorCode=error_code,
        )


class PayloadTooLarge(AwsError):
    """A runtime body over 6 MiB. AWS answers 413 with only ``{"message": ...}``, so boto3 raises a
    ``ClientError`` whose code is ``413``; the same shape here keeps users' error handling working."""

    code, status, typed = "413", 413, False


class ModelNotReadyException(AwsError):
    code, status = "ModelNotReadyException", 429


class InternalDependencyException(AwsError):
    code, status = "InternalDependencyException", 530


def render_error(err: AwsError, request_id: str, *, json_content_type: str) -> tuple[int, Headers, bytes]:
    """Status, headers and body for ``err``. The code goes in both ``__type`` and ``x-amzn-errortype``: the
    awsJson parser reads the first, and the restJson parser needs one of them to raise the modelled class.
    An untyped error (``typed`` False) has neither, as AWS sends it."""
    headers: Headers = [
        (b"content-type", json_content_type.encode("latin-1")),
        (b"x-amzn-requestid", request_id.encode("latin-1")),
    ]
    if err.typed:
        body = json.dumps({"__type": err.code, "Message": err.message, **err.fields}).encode()
        headers.append((b"x-amzn-errortype", err.code.encode("latin-1")))
    else:
        body = json.dumps({"message": err.message, **err.fields}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    return err.status, headers, body


def not_found(kind: str, arn: str) -> str:
    """AWS wording for a missing resource: ``Could not find endpoint "arn:…".``"""
    return f'Could not find {kind} "{arn}".'


def already_exists(kind: str, arn: str) -> str:
    """AWS wording for a duplicate create: ``Cannot create already existing model "arn:…".``"""
    return f'Cannot create already existing {kind} "{arn}".'


# Application Auto Scaling (awsJson1_1, AnyScaleFrontendService). Validation problems are
# ValidationException as on SageMaker; a missing scalable target or policy has its own code there.
class ObjectNotFoundException(AwsError):
    code, status = "ObjectNotFoundException", 400


class LimitExceededException(AwsError):
    code, status = "LimitExceededException", 400


class ConcurrentUpdateException(AwsError):
    """Two requests changed the same scalable target or policy at once; retrying succeeds."""

    code, status = "ConcurrentUpdateException", 400


class FailedResourceAccessException(AwsError):
    code, status = "FailedResourceAccessException", 400


class InvalidNextTokenException(AwsError):
    code, status = "InvalidNextTokenException", 400


class InternalServiceException(AwsError):
    """Application Auto Scaling's spelling of an internal error (500, so SDKs retry it)."""

    code, status = "InternalServiceException", 500
