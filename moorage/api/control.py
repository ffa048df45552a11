"""The control-plane adapter: `POST /` with `X-Amz-Target: SageMaker.<Op>` (awsJson1_1).

Operations are dispatched through one explicit table built at start-up; a modelled operation that is not
in the table answers an error naming it, never a canned success."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from moorage.api.errors import (
    AwsError,
    InternalFailure,
    NotImplementedOperation,
    SerializationException,
    UnknownOperationException,
)
from moorage.api.http import error_response, request_id
from moorage.api.json_protocol import operation_for_target, parse_json_request, serialize_json_response
from moorage.api.spec import load_service
from moorage.control import endpoint_configs, models, tags
from moorage.control.context import Caller
from moorage.control.endpoints import Endpoints
from moorage.control.reconciler import Reconciler
from moorage.http.responses import Response
from moorage.store import Store

Operation = Callable[[Caller, dict[str, Any]], dict[str, Any]]

MAX_CONTROL_BODY = 16 * 1024 * 1024
_CONTENT_TYPE = "application/x-amz-json-1.1"
_CONTENT_TYPE_BYTES = _CONTENT_TYPE.encode()
_CREDENTIAL = re.compile(rb"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
log = logging.getLogger("moorage.api")


def operations(store: Store, reconciler: Reconciler) -> dict[str, Operation]:
    endpoints = Endpoints(store, reconciler)
    return {
        "CreateModel": partial(models.create_model, store),
        "DescribeModel": partial(models.describe_model, store),
        "ListModels": partial(models.list_models, store),
        "DeleteModel": partial(models.delete_model, store),
        "CreateEndpointConfig": partial(endpoint_configs.create_endpoint_config, store),
        "DescribeEndpointConfig": partial(endpoint_configs.describe_endpoint_config, store),
        "ListEndpointConfigs": partial(endpoint_configs.list_endpoint_configs, store),
        "DeleteEndpointConfig": partial(endpoint_configs.delete_endpoint_config, store),
        "CreateEndpoint": endpoints.create,
        "DescribeEndpoint": endpoints.describe,
        "ListEndpoints": endpoints.list,
        "UpdateEndpoint": endpoints.update,
        "DeleteEndpoint": endpoints.delete,
        "AddTags": partial(tags.add_tags, store),
        "ListTags": partial(tags.list_tags, store),
        "DeleteTags": partial(tags.delete_tags, store),
    }


def region_of(headers: Mapping[bytes, bytes], default: str) -> str:
    """The region is whatever the client signed for (any region is accepted)."""
    authorization = headers.get(b"authorization")
    if authorization and (match := _CREDENTIAL.search(authorization)):
        return match.group(1).decode()
    return default


class ControlApi:
    def __init__(self, table: dict[str, Operation], account: str, default_region: str) -> None:
        self.service = load_service("sagemaker")
        self.table = table
        self.account = account
        self.default_region = default_region

    def __call__(self, headers: Mapping[bytes, bytes], body: bytes) -> Response:
        rid = request_id()
        try:
            result, operation = self._handle(headers, body)
            payload = serialize_json_response(operation, result)
        except AwsError as err:
            return error_response(err, rid, _CONTENT_TYPE)
        except Exception:
            log.exception("control-plane operation failed")
            return error_response(
                InternalFailure("The server hit an internal error; see its log."), rid, _CONTENT_TYPE
            )
        return Response(200, payload, _CONTENT_TYPE_BYTES, b"x-amzn-RequestId: %s\r\n" % rid.encode())

    @staticmethod
    def too_large() -> Response:
        """The answer when the front door stops reading a request body over the limit."""
        return error_response(_too_large_error(), request_id(), _CONTENT_TYPE)

    @staticmethod
    def refusal(status: int, message: str) -> Response:
        """A request the HTTP server could not take (unparseable, head too large, too slow)."""
        response = error_response(SerializationException(message), request_id(), _CONTENT_TYPE)
        return response._replace(status=status)

    def _handle(self, headers: Mapping[bytes, bytes], body: bytes) -> tuple[dict[str, Any], Any]:
        target = headers.get(b"x-amz-target")
        if target is None:
            raise UnknownOperationException(
                "Missing X-Amz-Target header; this port expects AWS SDK requests."
            )
        operation = operation_for_target(self.service, target.decode("latin-1"))
        handler = self.table.get(operation.name)
        if handler is None:
            raise NotImplementedOperation(
                f"{operation.name} is a SageMaker operation this server does not implement yet."
            )
        if len(body) > MAX_CONTROL_BODY:
            raise _too_large_error()
        params = parse_json_request(operation, body)
        caller = Caller(region=region_of(headers, self.default_region), account=self.account)
        return handler(caller, params), operation


def _too_large_error() -> SerializationException:
    return SerializationException(
        f"Request body is larger than {MAX_CONTROL_BODY} bytes; SageMaker API requests are small JSON "
        "documents, so check what the client is sending."
    )
