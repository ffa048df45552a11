"""awsJson1_1 services on the port: `POST /` with `X-Amz-Target: <targetPrefix>.<Op>`.

One adapter serves every such service (SageMaker, Application Auto Scaling): the target prefix picks the
service, its botocore model parses and validates the request, and its operation table (built at start-up)
handles it. A modelled operation missing from the table answers an error naming it, never a canned
success. A new service is a new table, not new protocol code."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from moorage.api.errors import (
    AwsError,
    InternalFailure,
    NotImplementedOperation,
    SerializationException,
    UnknownOperationException,
)
from moorage.api.http import CONTROL_CONTENT_TYPE, error_response, request_id
from moorage.api.json_protocol import operation_for_target, parse_json_request, serialize_json_response
from moorage.api.spec import load_service
from moorage.control.context import Caller
from moorage.http.responses import Response
from moorage.store import Store

Params = dict[str, Any]
# Operations are coroutines: they reach the store through Store.run, never on the event loop itself.
Operation = Callable[[Caller, Params], Awaitable[Params]]

_CONTENT_TYPE = CONTROL_CONTENT_TYPE
_CONTENT_TYPE_BYTES = _CONTENT_TYPE.encode()
# Bodies bigger than this are parsed and validated on a worker thread, so a large (or hostile) request
# cannot hold the event loop that also carries invocations; almost every real request is far smaller.
PARSE_ON_THREAD_BYTES = 64 * 1024
_CREDENTIAL = re.compile(rb"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
log = logging.getLogger("moorage.api")


def region_of(headers: Mapping[bytes, bytes], default: str) -> str:
    """The region is whatever the client signed for (any region is accepted)."""
    authorization = headers.get(b"authorization")
    if authorization and (match := _CREDENTIAL.search(authorization)):
        return match.group(1).decode()
    return default


@dataclass(frozen=True)
class _Call:
    """A parsed, validated request, ready for its handler."""

    operation: Any  # botocore OperationModel
    handler: Operation
    caller: Caller
    params: dict[str, Any]


class JsonService:
    """One awsJson1_1 service: its botocore model and its operation table."""

    def __init__(
        self,
        service_name: str,
        table: dict[str, Operation],
        account: str,
        default_region: str,
        max_body_bytes: int,
    ) -> None:
        self.service = load_service(service_name)
        self.target_prefix: str = self.service.metadata["targetPrefix"]
        self.table = table
        self.account = account
        self.default_region = default_region
        self.max_body_bytes = max_body_bytes

    def __call__(self, headers: Mapping[bytes, bytes], body: bytes) -> Response | Awaitable[Response]:
        rid = request_id()
        if len(body) > PARSE_ON_THREAD_BYTES:
            return self._parse_on_thread(rid, headers, body)
        try:
            call = self._parse(headers, body)
        except Exception as exc:
            return _failure(exc, rid)
        return self._respond(call, rid)

    async def _parse_on_thread(self, rid: str, headers: Mapping[bytes, bytes], body: bytes) -> Response:
        try:
            call = await asyncio.to_thread(self._parse, headers, body)
        except Exception as exc:
            return _failure(exc, rid)
        return await self._respond(call, rid)

    async def _respond(self, call: _Call, rid: str) -> Response:
        try:
            payload = serialize_json_response(call.operation, await call.handler(call.caller, call.params))
        except Exception as exc:
            return _failure(exc, rid)
        return Response(200, payload, _CONTENT_TYPE_BYTES, b"x-amzn-RequestId: %s\r\n" % rid.encode())

    @staticmethod
    def too_large_message(limit: int) -> str:
        return (
            f"Request body is larger than {limit} bytes; SageMaker API requests are small JSON "
            "documents, so check what the client is sending."
        )

    def _parse(self, headers: Mapping[bytes, bytes], body: bytes) -> _Call:
        target = headers.get(b"x-amz-target")
        if target is None:
            raise UnknownOperationException(MISSING_TARGET)
        operation = operation_for_target(self.service, target.decode("latin-1"))
        handler = self.table.get(operation.name)
        if handler is None:
            raise NotImplementedOperation(
                f"{operation.name} is a {self.service.service_name} operation this server does not "
                "implement yet."
            )
        if len(body) > self.max_body_bytes:  # the HTTP server refuses these first; this is a backstop
            raise SerializationException(self.too_large_message(self.max_body_bytes))
        params = parse_json_request(operation, body)
        caller = Caller(region=region_of(headers, self.default_region), account=self.account)
        return _Call(operation, handler, caller, params)


def on_store(store: Store, work: Callable[[Store, Caller, Params], Params]) -> Operation:
    """An operation that only reads and writes the store, run whole on the store's threads."""

    def operation(caller: Caller, params: Params) -> Awaitable[Params]:
        return store.run(work, store, caller, params)

    return operation


MISSING_TARGET = "Missing X-Amz-Target header; this port expects AWS SDK requests."


class JsonServices:
    """Every awsJson1_1 service on the port, found by the X-Amz-Target prefix (a dict lookup)."""

    def __init__(self, services: list[JsonService]) -> None:
        self.by_prefix = {service.target_prefix.encode(): service for service in services}
        self.default = services[0]  # answers requests that name no service it knows

    def __call__(self, headers: Mapping[bytes, bytes], body: bytes) -> Response | Awaitable[Response]:
        prefix = headers.get(b"x-amz-target", b"").partition(b".")[0]
        return self.by_prefix.get(prefix, self.default)(headers, body)


def _failure(exc: Exception, rid: str) -> Response:
    if isinstance(exc, AwsError):
        return error_response(exc, rid, _CONTENT_TYPE)
    log.error("control-plane operation failed", exc_info=exc)
    return error_response(
        InternalFailure("The server hit an internal error; see its log."), rid, _CONTENT_TYPE
    )
