"""The invocation path: pick a variant and a worker, forward the bytes, map failures to SageMaker errors.

Shared by every runtime entry point so limits, timeouts and error wording live in one place."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from moorage.api.errors import ModelError, ServiceUnavailable, ValidationError
from moorage.dataplane.connection import WorkerLost, WorkerResponse, WorkerUnavailable
from moorage.dataplane.policy import choose_variant, choose_worker
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
UNAVAILABLE_PATIENCE = 5.0
TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)


@dataclass(slots=True)
class Invocation:
    """One InvokeEndpoint request, headers kept as the raw bytes the client sent."""

    endpoint: str
    body: bytes
    content_type: bytes | None = None
    accept: bytes | None = None
    custom_attributes: bytes | None = None
    inference_id: bytes | None = None
    target_model: bytes | None = None
    target_variant: str | None = None


@dataclass(slots=True)
class InvocationResult:
    variant: str
    response: WorkerResponse


def _encode(inv: Invocation) -> bytes:
    parts = [b"POST /invocations HTTP/1.1\r\nhost: instance\r\ncontent-length: ", str(len(inv.body)).encode()]
    if inv.content_type is not None:
        parts += (b"\r\ncontent-type: ", inv.content_type)
    if inv.accept is not None:
        parts += (b"\r\naccept: ", inv.accept)
    if inv.custom_attributes is not None:
        parts += (b"\r\nx-amzn-sagemaker-custom-attributes: ", inv.custom_attributes)
    if inv.inference_id is not None:
        parts += (b"\r\nx-amzn-sagemaker-inference-id: ", inv.inference_id)
    if inv.target_model is not None:
        parts += (b"\r\nx-amzn-sagemaker-target-model: ", inv.target_model)
    parts += (b"\r\n\r\n", inv.body)
    return b"".join(parts)


def not_found(endpoint: str, account: str) -> ValidationError:
    return ValidationError(f"Endpoint {endpoint} of account {account} not found.")


def _model_error(route: EndpointRoute, status: int, original: str, detail: str | None = None) -> ModelError:
    kind = "client" if 400 <= status < 500 else "server"
    text = detail if detail is not None else f'with message "{original}"'
    return ModelError(
        f"Received {kind} error ({status}) from primary {text}. "
        f'See the endpoint log ("moorage logs {route.name}") for more information.',
        original_status_code=status,
        original_message=original,
        log_stream_arn=route.log_stream_arn,
    )


async def _forward(
    route: EndpointRoute, variant: VariantRoute, raw: bytes
) -> tuple[WorkerRoute, WorkerResponse]:
    """Send to the least busy worker. A worker that refuses the connection got nothing, so the request
    moves to another one; while none accepts (a worker being re-forked, an instance being replaced) it
    waits a little, up to UNAVAILABLE_PATIENCE seconds."""
    tried: set[WorkerRoute] = set()
    deadline = 0.0
    pause = 0.01
    while True:
        worker = choose_worker([w for w in variant.workers if w not in tried] if tried else variant.workers)
        if worker is None:
            now = time.monotonic()
            deadline = deadline or now + min(UNAVAILABLE_PATIENCE, variant.timeout)
            if now >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)
            tried.clear()
            continue
        client = worker.client
        client.outstanding += 1
        try:
            return worker, await client.request(raw, variant.timeout)
        except WorkerUnavailable:
            tried.add(worker)
        except TimeoutError:
            worker.kill()  # a hung handler would hold this worker forever; its instance re-forks it
            raise _model_error(route, 0, TIMEOUT_MESSAGE) from None
        except WorkerLost:
            raise _model_error(
                route,
                0,
                "The instance stopped before it answered (it exited or was killed); it is being replaced.",
            ) from None
        finally:
            client.outstanding -= 1
    starting = f" ({variant.starting} starting)" if variant.starting else ""
    raise ServiceUnavailable(
        f"No instance of variant {variant.name} of endpoint {route.name} is ready to serve{starting}. "
        "Failed instances are replaced automatically; retry shortly."
    )


async def invoke(table: RoutingTable, inv: Invocation, account: str) -> InvocationResult:
    route = table.get(inv.endpoint)
    if route is None:
        raise not_found(inv.endpoint, account)
    variant = choose_variant(route, inv.target_variant)
    if variant is None:
        if inv.target_variant is not None:
            raise ValidationError(
                f"The variant {inv.target_variant} does not exist in endpoint {route.name}. "
                f"Valid variants: {', '.join(route.by_name)}."
            )
        raise ValidationError(f"Endpoint {route.name} has no variant with a weight above zero.")
    _, response = await _forward(route, variant, _encode(inv))
    if not 200 <= response.status < 300:
        raise _model_error(route, response.status, response.body.decode("utf-8", "replace")[:4096])
    if len(response.body) > MAX_PAYLOAD_BYTES:
        raise _model_error(route, response.status, "", detail="and could not load the entire response body")
    return InvocationResult(variant.name, response)
