"""awsJson1_0, what boto3 speaks to CloudWatch from botocore 1.42.7 on.

``POST /`` with ``X-Amz-Target: GraniteServiceVersion20100801.<Op>`` and a JSON object of the input;
parsing and writing are the SageMaker adapter's (moorage/api/json_protocol.py), which are protocol
version agnostic. Errors are ``{"__type": <shape id>, "message": ...}`` with ``x-amzn-query-error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, ServiceModel

from moorage.api.cloudwatch.errors import Wire
from moorage.api.cloudwatch.wire import Params, Request, error_headers, error_type, request_headers
from moorage.api.errors import UnknownOperationException
from moorage.api.json_protocol import operation_for_target, parse_json_request, serialize_json_response
from moorage.http.responses import Response

CONTENT_TYPE = b"application/x-amz-json-1.0"


class AwsJson10:
    def operation(self, model: ServiceModel, request: Request) -> OperationModel:
        target = request.headers.get(b"x-amz-target", b"").decode("latin-1")
        if request.method != b"POST":
            raise UnknownOperationException(f"{target} calls are POST requests.")
        return operation_for_target(model, target)

    def params(self, operation: OperationModel, request: Request) -> Params:
        return parse_json_request(operation, request.body)

    def response(self, operation: OperationModel, result: Mapping[str, Any], rid: str) -> Response:
        return Response(200, serialize_json_response(operation, result), CONTENT_TYPE, request_headers(rid))

    def error(self, error: Wire, rid: str) -> Response:
        body = json.dumps({"__type": error_type(error), "message": error.message}).encode()
        return Response(error.status, body, CONTENT_TYPE, error_headers(error, rid))
