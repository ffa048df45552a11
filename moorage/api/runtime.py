"""The runtime adapter: `POST /endpoints/{EndpointName}/invocations` (restJson1), the hot path.

A plain ASGI callable: header bytes are picked out in one pass, the body is passed through untouched and
only the routing table is consulted (no database, no control plane)."""

from __future__ import annotations

import json
import logging

from moorage.api.asgi import Receive, Scope, Send, read_body, request_id, respond, respond_error
from moorage.api.errors import AwsError, InternalFailure, ValidationError
from moorage.dataplane.invoke import MAX_PAYLOAD_BYTES, Invocation, invoke
from moorage.dataplane.routes import RoutingTable

_JSON = "application/json"
_PREFIX = "/endpoints/"
_TOO_LARGE = json.dumps({"message": f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."}).encode()
_HEADER_LIMITS = {
    b"content-type": ("contentType", 1024),
    b"accept": ("accept", 1024),
    b"x-amzn-sagemaker-custom-attributes": ("customAttributes", 1024),
    b"x-amzn-sagemaker-target-variant": ("targetVariant", 63),
    b"x-amzn-sagemaker-inference-id": ("inferenceId", 64),
    b"x-amzn-sagemaker-target-model": ("targetModel", 1024),
}
log = logging.getLogger("moorage.runtime")


def _too_long(member: str, limit: int) -> ValidationError:
    return ValidationError(
        f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
        f"Member must have length less than or equal to {limit}"
    )


class RuntimeApi:
    def __init__(self, table: RoutingTable, account: str) -> None:
        self.table = table
        self.account = account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id()
        path: str = scope["path"]
        name, _, action = path[len(_PREFIX) :].partition("/")
        try:
            if scope["method"] != "POST" or action != "invocations":
                raise ValidationError(
                    f"{scope['method']} {path} is not supported; use InvokeEndpoint "
                    "(POST /endpoints/<name>/invocations)."
                )
            inv = Invocation(endpoint=name, body=b"")
            for key, value in scope["headers"]:
                if key == b"content-type":
                    inv.content_type = value
                elif key == b"accept":
                    inv.accept = value
                elif key.startswith(b"x-amzn-sagemaker-"):
                    if key == b"x-amzn-sagemaker-custom-attributes":
                        inv.custom_attributes = value
                    elif key == b"x-amzn-sagemaker-target-variant":
                        inv.target_variant = value.decode("latin-1")
                    elif key == b"x-amzn-sagemaker-inference-id":
                        inv.inference_id = value
                    elif key == b"x-amzn-sagemaker-target-model":
                        inv.target_model = value
                    else:
                        continue
                else:
                    continue
                limit = _HEADER_LIMITS.get(key)
                if limit is not None and len(value) > limit[1]:
                    raise _too_long(*limit)
            body = await read_body(receive, MAX_PAYLOAD_BYTES)
            if body is None:
                headers = [(b"content-type", _JSON.encode()), (b"x-amzn-requestid", rid.encode())]
                await respond(send, 413, headers, _TOO_LARGE)
                return
            inv.body = body
            result = await invoke(self.table, inv, self.account)
        except AwsError as err:
            await respond_error(send, err, rid, _JSON)
            return
        except Exception:
            log.exception("invocation failed inside the server")
            await respond_error(
                send, InternalFailure("The server hit an internal error; see its log."), rid, _JSON
            )
            return
        response = result.response
        content_type = response.header(b"content-type") or b"application/octet-stream"
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(response.body)).encode()),
            (b"x-amzn-invoked-production-variant", result.variant.encode()),
            (b"x-amzn-requestid", rid.encode()),
        ]
        custom = response.header(b"x-amzn-sagemaker-custom-attributes")
        if custom is not None:
            headers.append((b"x-amzn-sagemaker-custom-attributes", custom))
        await respond(send, 200, headers, response.body)
