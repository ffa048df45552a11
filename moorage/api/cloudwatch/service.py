"""The CloudWatch dispatcher: a request in any of the three protocols is read by its protocol module,
checked against botocore's cloudwatch model, run by the operation table (moorage/monitoring/
operations.py) and answered in the protocol it came in.

An operation the model has but the table does not is answered ``NotImplemented`` (501, which SDKs do
not retry) naming the operations Moorage serves; one the model does not have is the protocol's
unknown-operation error (``InvalidAction`` in awsQuery, ``UnknownOperationException`` otherwise).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from botocore.model import OperationModel

from moorage.api.cloudwatch.cbor import RpcV2Cbor
from moorage.api.cloudwatch.errors import InternalServiceError, NotImplementedOperation, Wire, on_the_wire
from moorage.api.cloudwatch.json10 import AwsJson10
from moorage.api.cloudwatch.query import AwsQuery
from moorage.api.cloudwatch.wire import CloudWatchProtocol, Params, Request
from moorage.api.errors import AwsError
from moorage.api.http import request_id
from moorage.api.json_service import PARSE_ON_THREAD_BYTES, Operation, region_of
from moorage.api.spec import load_service
from moorage.auth.errors import auth_error_response
from moorage.auth.sigv4 import AuthFailure
from moorage.control.context import Caller
from moorage.http.responses import Response

log = logging.getLogger("moorage.api")
CBOR = RpcV2Cbor()
JSON = AwsJson10()
QUERY = AwsQuery()
# what the HTTP server refuses on the rpc-v2-cbor path, by status, in CloudWatch's words
_REFUSALS = {
    404: "UnknownOperationException",
    408: "RequestTimeout",
    413: "RequestEntityTooLarge",
    500: InternalServiceError.code,
}


@dataclass(frozen=True)
class _Call:
    operation: OperationModel
    handler: Operation
    caller: Caller
    params: Params


class CloudWatchApi:
    """The CloudWatch operations of `table`, in every protocol; ARNs are minted in `account`."""

    def __init__(self, table: dict[str, Operation], account: str, default_region: str) -> None:
        self.model = load_service("cloudwatch")
        self.table = table
        self.account = account
        self.default_region = default_region
        self._served = ", ".join(sorted(table))

    def cbor(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        """``POST /service/GraniteServiceVersion20100801/operation/<Op>``."""
        return self._serve(CBOR, Request(method, url, headers, body))

    def json(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        """``POST /`` with ``X-Amz-Target: GraniteServiceVersion20100801.<Op>``."""
        return self._serve(JSON, Request(method, url, headers, body))

    def query(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        """``POST /`` with a form body (or ``GET /?Action=…``) for CloudWatch's version."""
        return self._serve(QUERY, Request(method, url, headers, body))

    def refusal(self, status: int, message: str) -> Response:
        """A request on the rpc-v2-cbor path that the HTTP server refused (too large, too slow, ...)."""
        code = _REFUSALS.get(status, "SerializationException")
        return CBOR.error(Wire(code, status, message), request_id())

    @staticmethod
    def auth_error(failure: AuthFailure) -> Response:
        """A refused signature on the rpc-v2-cbor path: the awsJson codes SageMaker answers
        (docs/security.md), in CBOR."""
        answer = auth_error_response(failure, "json")
        fields = json.loads(answer.body)
        wire = Wire(fields["__type"], answer.status, fields.get("Message", ""))
        return CBOR.error(wire, request_id())

    def _serve(self, protocol: CloudWatchProtocol, request: Request) -> Response | Awaitable[Response]:
        rid = request_id()
        if len(request.body) > PARSE_ON_THREAD_BYTES:
            return self._parse_on_thread(protocol, request, rid)
        try:
            call = self._parse(protocol, request)
        except Exception as exc:
            return self._failure(protocol, exc, rid)
        return self._respond(protocol, call, rid)

    async def _parse_on_thread(self, protocol: CloudWatchProtocol, request: Request, rid: str) -> Response:
        """A large body is read on a worker thread, so it cannot hold the loop that carries invocations."""
        try:
            call = await asyncio.to_thread(self._parse, protocol, request)
        except Exception as exc:
            return self._failure(protocol, exc, rid)
        return await self._respond(protocol, call, rid)

    def _parse(self, protocol: CloudWatchProtocol, request: Request) -> _Call:
        operation = protocol.operation(self.model, request)
        handler = self.table.get(operation.name)
        if handler is None:
            raise NotImplementedOperation(
                f"{operation.name} is not supported by Moorage. Its CloudWatch API serves {self._served}."
            )
        params = protocol.params(operation, request)
        caller = Caller(region=region_of(request.headers, self.default_region), account=self.account)
        return _Call(operation, handler, caller, params)

    async def _respond(self, protocol: CloudWatchProtocol, call: _Call, rid: str) -> Response:
        try:
            result = await call.handler(call.caller, call.params)
            return protocol.response(call.operation, result, rid)
        except Exception as exc:
            return self._failure(protocol, exc, rid)

    @staticmethod
    def _failure(protocol: CloudWatchProtocol, exc: Exception, rid: str) -> Response:
        if isinstance(exc, AwsError):
            return protocol.error(on_the_wire(exc), rid)
        log.error("CloudWatch operation failed", exc_info=exc)
        internal = InternalServiceError("The server hit an internal error; see its log.")
        return protocol.error(on_the_wire(internal), rid)
