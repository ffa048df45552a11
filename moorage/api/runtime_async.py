"""InvokeEndpointAsync: `POST /endpoints/{EndpointName}/async-invocations` (restJson1) → 202.

The request is checked against botocore's shape, resolved against the endpoint's route (its
AsyncInferenceConfig is there: no database read) and committed to the queue in the state store before
the 202 is written; commits are grouped (moorage/jobs/asynchronous/commits.py), so many requests share
one transaction."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from botocore.model import StructureShape

from moorage.api.errors import AwsError, InternalFailure, ServiceUnavailable, ValidationError
from moorage.api.http import RUNTIME_CONTENT_TYPE, error_response
from moorage.api.spec import load_service
from moorage.api.validate import validate_members, validation_message
from moorage.dataplane.invoke import not_found
from moorage.dataplane.routes import RoutingTable
from moorage.http.responses import Response, header_value
from moorage.jobs.asynchronous.commits import GroupCommit, QueueFull
from moorage.jobs.asynchronous.config import AsyncSettings
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, child

MAX_INLINE_BODY = 128_000
DEFAULT_TTL_SECONDS = 21_600  # 6 hours
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 900
_JSON = RUNTIME_CONTENT_TYPE
log = logging.getLogger("moorage.runtime")


@functools.cache
def _shape() -> StructureShape:
    shape = load_service("sagemaker-runtime").operation_model("InvokeEndpointAsync").input_shape
    assert isinstance(shape, StructureShape)
    return shape


@functools.cache
def _headers() -> dict[str, tuple[bytes, str]]:
    """Member -> (lower-cased header, its shape's type), read from the model."""
    out = {}
    for member, shape in _shape().members.items():
        if shape.serialization.get("location") == "header":
            out[member] = (shape.serialization["name"].lower().encode(), shape.type_name)
    return out


def output_locations(
    settings: AsyncSettings, output_id: str, extension: str | None, filename: str | None
) -> tuple[str, str]:
    """Where a request's result and its failure are written: `<S3OutputPath>[/<extension>]/<Filename or
    output id.out>`, and `<S3FailurePath or S3OutputPath>[/<extension>]/<output id>-error.out`, the output
    id being a UUID of the request's own (as on AWS; the InferenceId is the caller's and may repeat)."""
    output = settings.output_path
    failure = settings.failure_root
    if extension:
        output, failure = child(output, extension.strip("/")), child(failure, extension.strip("/"))
    return child(output, filename or f"{output_id}.out"), child(failure, f"{output_id}-error.out")


def check_extension(extension: str) -> None:
    """S3OutputPathExtension names folders below S3OutputPath: no segment may be empty, '.' or '..' (they
    would name another folder on disk, or a key a store that normalises paths resolves elsewhere)."""
    segments = extension.strip("/").split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValidationError(
            f"S3OutputPathExtension {extension!r} is not valid: it is a path of folder names below "
            "S3OutputPath separated by '/', none of them empty, '.' or '..' (e.g. 'batch/7')."
        )


def _header_uri(uri: str) -> bytes:
    """A location for a response header: characters that are not printable ASCII are percent-encoded
    (UTF-8), as in a URL, since a header is Latin-1."""
    return header_value(urllib.parse.quote(uri, safe="".join(map(chr, range(0x21, 0x7F)))))


class AsyncRuntimeApi:
    """Accepts InvokeEndpointAsync requests; `accepted(endpoint)` is told after each commit (it wakes
    the dispatcher on the server that runs them)."""

    def __init__(
        self,
        table: RoutingTable,
        account: str,
        queue: GroupCommit[dict[str, Any]],
        accepted: Callable[[str], None],
        local_access: LocalAccess = LocalAccess(),
    ) -> None:
        self.table = table
        self.account = account
        self.queue = queue
        self.accepted = accepted
        # with SigV4 (--credentials) a caller may name a path on the server only below the local data root
        self.local_access = local_access

    def __call__(
        self, endpoint: str, headers: Mapping[bytes, bytes], body: bytes, rid: str
    ) -> Response | asyncio.Future[Response]:
        try:
            row, response = self._accept(endpoint, headers, body)
        except AwsError as err:
            return error_response(err, rid, _JSON)
        try:
            committed = self.queue.submit(row)
        except QueueFull:
            busy = ServiceUnavailable(
                "The server has too many InvokeEndpointAsync requests waiting to be written to its state "
                "store; retry with exponential back-off."
            )
            return error_response(busy, rid, _JSON)
        done: asyncio.Future[Response] = committed.get_loop().create_future()

        def answer(commit: asyncio.Future[None]) -> None:
            if commit.exception() is not None:
                log.error("could not queue an asynchronous request", exc_info=commit.exception())
                failure = InternalFailure(
                    "The request could not be written to the server's state store, so it was not accepted; "
                    "retry it. The server log has the cause."
                )
                done.set_result(error_response(failure, rid, _JSON))
                return
            self.accepted(endpoint)
            done.set_result(
                response._replace(headers=response.headers + b"x-amzn-RequestId: %s\r\n" % rid.encode())
            )

        committed.add_done_callback(answer)
        return done

    def _accept(
        self, endpoint: str, headers: Mapping[bytes, bytes], body: bytes
    ) -> tuple[dict[str, Any], Response]:
        params = _params(endpoint, headers, body)
        problems = validate_members(_shape(), params)
        if problems:
            raise ValidationError(validation_message(problems))
        route = self.table.get(endpoint)
        if route is None:
            raise not_found(endpoint, self.account)
        settings = route.asynchronous
        if settings is None:
            raise ValidationError(
                f"Endpoint {endpoint} of account {self.account} is not an asynchronous endpoint (its "
                "endpoint config has no AsyncInferenceConfig); use InvokeEndpoint."
            )
        location = params.get("InputLocation")
        if (location is None) == (not body):
            raise ValidationError(
                "Provide exactly one of InputLocation and Body: InputLocation names the object that holds "
                f"the payload; Body carries it inline (at most {MAX_INLINE_BODY} bytes)."
            )
        if len(body) > MAX_INLINE_BODY:
            raise ValidationError(
                f"The inline Body is {len(body)} bytes; at most {MAX_INLINE_BODY} are accepted. Upload the "
                "payload to S3 and pass its InputLocation instead."
            )
        if location is not None:
            self._check_input(location)
        extension = params.get("S3OutputPathExtension")
        if extension is not None:
            check_extension(extension)
        output_id = str(uuid.uuid4())
        inference_id = params.get("InferenceId") or output_id
        output, failure = output_locations(settings, output_id, extension, params.get("Filename"))
        now = time.time()
        row = {
            "endpoint_name": endpoint,
            "inference_id": inference_id,
            "output_id": output_id,
            "input_location": location,
            "body": body if location is None else None,
            "content_type": params.get("ContentType"),
            "accept": params.get("Accept"),
            "custom_attributes": params.get("CustomAttributes"),
            "output_location": output,
            "failure_location": failure,
            "notification": settings.notification,
            "accepted_at": now,
            "expires_at": now + params.get("RequestTTLSeconds", DEFAULT_TTL_SECONDS),
            "invocation_timeout": float(
                params.get("InvocationTimeoutSeconds", DEFAULT_INVOCATION_TIMEOUT_SECONDS)
            ),
        }
        extra = b"X-Amzn-SageMaker-OutputLocation: %s\r\nX-Amzn-SageMaker-FailureLocation: %s\r\n" % (
            _header_uri(output),
            _header_uri(failure),
        )
        answer = Response(202, json.dumps({"InferenceId": inference_id}).encode(), _JSON.encode(), extra)
        return row, answer

    def _check_input(self, uri: str) -> None:
        """With --credentials, an InputLocation on the server's disk must be below --local-data-root: a
        signed caller must not have the server read (and hand to the model) any file it can read."""
        try:
            self.local_access.check(uri, "InputLocation")
        except ObjectError as err:
            raise ValidationError(str(err)) from None


def _params(endpoint: str, headers: Mapping[bytes, bytes], body: bytes) -> dict[str, Any]:
    """The request's members as its headers carry them; integers are read here (a header that is not
    one is refused in Coral's words)."""
    params: dict[str, Any] = {"EndpointName": endpoint}
    for member, (header, type_name) in _headers().items():
        raw = headers.get(header)
        if raw is None:
            continue
        value = raw.decode("latin-1")
        if type_name == "integer":
            try:
                params[member] = int(value)
            except ValueError:
                name = member[0].lower() + member[1:]
                raise ValidationError(
                    f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
                    "constraint: Member must be an integer"
                ) from None
        else:
            params[member] = value
    if body:
        params["Body"] = body
    return params
