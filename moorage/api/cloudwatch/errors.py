"""CloudWatch's errors, and the project's generic ones said in CloudWatch's terms.

``code`` is the awsQuery error code of botocore's cloudwatch model (``error.code`` of each exception
shape: ``InvalidParameterValue`` for the shape InvalidParameterValueException), because that is what
botocore maps to ``client.exceptions.<Shape>`` in every protocol: awsQuery sends it as ``<Code>``,
awsJson1_0 and rpc-v2-cbor in the ``x-amzn-query-error`` header (the model is awsQueryCompatible).
"""

from __future__ import annotations

from typing import NamedTuple

from moorage.api import errors
from moorage.api.errors import AwsError

# CloudWatch's code for constraint violations and for what Moorage does not support is the runtime's
ValidationError = errors.ValidationError
# a CloudWatch operation Moorage does not serve: 501 NotImplemented, which SDKs do not retry
NotImplementedOperation = errors.NotImplementedOperation


class InvalidParameterValue(AwsError):
    code, status = "InvalidParameterValue", 400


class MissingParameter(AwsError):
    code, status = "MissingParameter", 400


class InvalidParameterCombination(AwsError):
    code, status = "InvalidParameterCombination", 400


class ResourceNotFound(AwsError):
    code, status = "ResourceNotFound", 404


class LimitExceeded(AwsError):
    code, status = "LimitExceeded", 400


class InvalidNextToken(AwsError):
    code, status = "InvalidNextToken", 400


class InvalidFormat(AwsError):
    code, status = "InvalidFormat", 400


class InternalServiceError(AwsError):
    code, status = "InternalServiceError", 500


class InvalidAction(AwsError):
    """awsQuery: the Action (or Version) names no CloudWatch operation."""

    code, status = "InvalidAction", 400


class MalformedQueryString(AwsError):
    """awsQuery: the form could not be read at all."""

    code, status = "MalformedQueryString", 400


class Wire(NamedTuple):
    """An error as it goes on the wire: the code botocore reads, its HTTP status, the message."""

    code: str
    status: int
    message: str

    @property
    def fault(self) -> str:
        return "Receiver" if self.status >= 500 else "Sender"


# the project's generic errors (raised by the model walker and shared helpers) -> CloudWatch's code
_GENERIC: dict[type[AwsError], type[AwsError]] = {
    errors.ValidationException: ValidationError,
    errors.ResourceNotFound: ResourceNotFound,
    errors.InvalidNextTokenException: InvalidNextToken,
    errors.LimitExceededException: LimitExceeded,
    errors.ResourceLimitExceeded: LimitExceeded,
    errors.InternalFailure: InternalServiceError,
    errors.InternalServiceException: InternalServiceError,
}


def on_the_wire(err: AwsError) -> Wire:
    """`err` with CloudWatch's code and status (its own, when it is already a CloudWatch error)."""
    target = _GENERIC.get(type(err))
    if target is not None:
        return Wire(target.code, target.status, err.message)
    return Wire(err.code, err.status, err.message)
