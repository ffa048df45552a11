"""The multi-model instance's HTTP routes: /ping, /invocations (the model named by
x-amzn-sagemaker-target-model, loaded on demand) and SageMaker's multi-model container API (/models).

Every /invocations answer says whether the model was loaded (`x-moorage-model-cache: hit|miss`), what
a miss cost (`x-moorage-model-timings`), how many models are loaded (`x-moorage-loaded-models`, those
being unloaded left out) and, when any finished since the previous answer, how long each unload took
(`x-moorage-model-unloaded: <µs>,<µs>,...`, whatever caused it, each reported once); the instance's own
failures carry `x-moorage-error: <kind>` and a plain-text message.

A request waits for its model's load at most MOORAGE_MME_READY_WAIT_SECONDS (ModelNotReady after); the
invocation timeout is the model's own time to answer, counted once it is loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping
from urllib.parse import parse_qs, unquote_to_bytes

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import parse_location
from moorage.artifacts.multimodel import InvalidTarget, location_uri, resolve_target
from moorage.dataplane.connection import WorkerLost, WorkerResponse, WorkerUnavailable
from moorage.http.responses import TEXT, Response, json_response, text_response
from moorage.serving.multimodel.backend import (
    CUSTOM_ATTRIBUTES,
    TARGET_HEADER,
    InvocationTimeout,
    LoadedModel,
)
from moorage.serving.multimodel.cache import ModelCache, Timings
from moorage.serving.multimodel.errors import (
    INVALID_TARGET,
    LOAD_FAILED,
    LOST,
    TIMEOUT,
    PlatformError,
    json_error,
    text_error,
)
from moorage.serving.multimodel.processes import STARTUP_TIMEOUT

logger = logging.getLogger("moorage.serving.multimodel")

_PING = json_response({"status": "Healthy"})
_NOT_FOUND = text_response("Not Found", 404)
_METHOD_NOT_ALLOWED = text_response("Method Not Allowed", 405)
_READS = (b"GET", b"HEAD")
_MODELS = b"/models"
_INVOKE = b"/invoke"
_MAX_PAGE = 100


class MultiModelApp:
    is_async = True

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache
        self.settings = cache.settings

    def __call__(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        path, _, query = url.partition(b"?")
        if path == b"/invocations":
            return self._invocations(headers, body) if method == b"POST" else _METHOD_NOT_ALLOWED
        if path == b"/ping":
            return _PING if method in _READS else _METHOD_NOT_ALLOWED
        if path == _MODELS:
            if method in _READS:
                return self._list(query)
            return self._register(body) if method == b"POST" else _METHOD_NOT_ALLOWED
        if path.startswith(_MODELS + b"/"):
            rest = path[len(_MODELS) + 1 :]
            if rest.endswith(_INVOKE) and method == b"POST":
                return self._invoke_named(_name(rest[: -len(_INVOKE)]), headers, body)
            name = _name(rest)
            if method in _READS:
                return self._describe(name)
            return self._unregister(name) if method == b"DELETE" else _METHOD_NOT_ALLOWED
        return _NOT_FOUND

    # -- /invocations ----------------------------------------------------------------------------

    async def _invocations(self, headers: Mapping[bytes, bytes], body: bytes) -> Response:
        timings = Timings()
        hit = False
        try:
            target = _target(headers.get(TARGET_HEADER))
            model = self.cache.loaded.get(target)
            hit = model is not None and not model.stopping
            if model is not None and hit:
                model.in_flight += 1  # the hit path: nothing to resolve or wait for
            else:
                try:
                    location = resolve_target(self.settings.source, target)
                except InvalidTarget as exc:
                    raise PlatformError(INVALID_TARGET, str(exc)) from None
                wait = self.settings.ready_wait
                model = await self.cache.acquire(target, location_uri(location), location, wait, timings)
            try:
                answer = await self._forward(model, headers, body)
            finally:
                self.cache.release(model)
        except PlatformError as error:
            return text_error(error, self._headers(hit, timings))
        except Exception as exc:  # never an unmarked "internal error": say what failed, log the rest
            logger.exception("serving a request failed")
            failure = PlatformError(
                LOAD_FAILED,
                f"The multi-model instance failed to serve the request ({exc!r}). See the endpoint log; "
                "retry the request.",
            )
            return text_error(failure, self._headers(hit, timings))
        return _relay(answer, self._headers(hit, timings))

    def _headers(self, hit: bool, timings: Timings) -> bytes:
        loaded = b"x-moorage-loaded-models: %d\r\n" % len(self.cache.loaded)
        unloads = self.cache.take_unloads()
        if unloads:
            loaded += b"x-moorage-model-unloaded: %s\r\n" % ",".join(map(str, unloads)).encode()
        if hit:
            return b"x-moorage-model-cache: hit\r\n" + loaded
        return b"x-moorage-model-cache: miss\r\n" + timings.header() + loaded

    async def _forward(
        self, model: LoadedModel, headers: Mapping[bytes, bytes], body: bytes
    ) -> WorkerResponse:
        """The model's answer within the invocation timeout, counted from now (the model is loaded)."""
        try:
            return await model.request(headers, body, self.settings.invocation_timeout)
        except TimeoutError as exc:
            replaced = isinstance(exc, InvocationTimeout) and exc.worker_replaced
            await self.cache.timed_out(model, replaced)
            if replaced:
                what = "The worker that ran it was stopped and is replaced; the model stays loaded."
            else:
                what = (
                    "The model is unloaded (it may have hung) once its other requests end; the next "
                    "request loads it again."
                )
            raise PlatformError(
                TIMEOUT,
                f"Model {model.name!r} ({model.uri}) did not answer within the invocation's "
                f"{self.settings.invocation_timeout:g} s. {what} Make the model answer faster, or send "
                "smaller requests.",
            ) from None
        except (WorkerLost, WorkerUnavailable) as exc:
            raise PlatformError(
                LOST,
                f"Model {model.name!r} ({model.uri}) stopped while answering ({exc}). The next request "
                "loads it again; see the endpoint log for why its process ended.",
            ) from None

    # -- the multi-model container API ----------------------------------------------------------

    def _list(self, query: bytes) -> Response:
        params = parse_qs(query.decode("latin-1"))
        try:
            limit = min(_MAX_PAGE, max(1, int(params.get("limit", [str(_MAX_PAGE)])[0])))
            start = max(0, int(params.get("next_page_token", ["0"])[0]))
        except ValueError:
            return json_error(400, "BadRequestException", "limit and next_page_token must be integers.")
        names = sorted(self.cache.loaded)
        page: dict[str, object] = {
            "models": [
                {"modelName": n, "modelUrl": self.cache.loaded[n].uri} for n in names[start : start + limit]
            ]
        }
        if start + limit < len(names):
            page["nextPageToken"] = str(start + limit)
        return json_response(page)

    def _describe(self, name: str) -> Response:
        model = self.cache.loaded.get(name)
        if model is None:
            return json_error(404, "ModelNotFoundException", f"Model not found: {name}")
        return json_response(
            [
                {
                    "modelName": name,
                    "modelUrl": model.uri,
                    "memoryBytes": model.memory_bytes,
                    "inFlight": model.in_flight,
                    **model.describe(),
                }
            ]
        )

    async def _register(self, body: bytes) -> Response:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return json_error(400, "BadRequestException", "The request body is not JSON.")
        if not isinstance(request, dict):
            return json_error(400, "BadRequestException", "The request body must be a JSON object.")
        url, name = request.get("url"), request.get("model_name")
        if not url or not isinstance(url, str):
            return json_error(400, "BadRequestException", "Parameter url is required.")
        if not name or not isinstance(name, str):
            return json_error(400, "BadRequestException", "Parameter model_name is required.")
        if name in self.cache.loaded or self.cache.loading(name):
            return json_error(409, "ConflictStatusException", f"Model {name} is already registered.")
        try:
            location = parse_location(url, "url")
        except ArtifactError as exc:
            return json_error(400, "BadRequestException", str(exc))
        try:
            model = await self.cache.acquire(name, url, location, STARTUP_TIMEOUT, Timings())
        except PlatformError as error:
            return json_error(error.status, error.kind, error.message)
        self.cache.release(model, discard=False)
        return json_response({"status": f'Model "{name}" registered'})

    async def _unregister(self, name: str) -> Response:
        if not await self.cache.unload(name):
            return json_error(404, "ModelNotFoundException", f"Model not found: {name}")
        return json_response({"status": f'Model "{name}" unregistered'})

    async def _invoke_named(self, name: str, headers: Mapping[bytes, bytes], body: bytes) -> Response:
        model = self.cache.loaded.get(name)
        if model is None or model.stopping:
            return json_error(404, "ModelNotFoundException", f"Model not found: {name}")
        model.in_flight += 1
        try:
            answer = await self._forward(model, headers, body)
        except PlatformError as error:
            return json_error(error.status, error.kind, error.message)
        finally:
            self.cache.release(model)
        return _relay(answer, b"")


def _target(raw: bytes | None) -> str:
    if raw is None:
        raise PlatformError(
            INVALID_TARGET,
            "The request names no model: send TargetModel (header x-amzn-sagemaker-target-model) with "
            "the path of a model under the endpoint's model prefix.",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PlatformError(INVALID_TARGET, "TargetModel is not valid UTF-8.") from None


def _name(raw: bytes) -> str:
    return unquote_to_bytes(raw).decode("utf-8", "replace")


def _relay(answer: WorkerResponse, extra: bytes) -> Response:
    content_type = answer.header(b"content-type") or TEXT
    attributes = answer.header(CUSTOM_ATTRIBUTES)
    if attributes is not None:
        extra += b"X-Amzn-SageMaker-Custom-Attributes: %s\r\n" % attributes
    return Response(answer.status, answer.body, content_type, extra)
