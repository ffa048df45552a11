"""The benchmark's floor: a bare ASGI callable running the recommender's four handlers.

No framework, no routing table, no proxy hop: what is left is uvicorn's HTTP parsing plus the
handlers themselves, so the gap between this app and Moorage is what Moorage adds. It imports the
very file users deploy, ``examples/recommender/code/inference.py``, and loads the model from
``MODEL_DIR`` once per worker process at lifespan startup.

    GET  /ping         200 {"status": "Healthy"} once model_fn has run
    POST /invocations  input_fn -> predict_fn -> output_fn; an exception with a ``status_code``
                       attribute answers that status with its message, any other answers 500

Run: MODEL_DIR=... uvicorn bare_app:app --app-dir bench --workers 2 --http httptools --loop uvloop
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

INFERENCE_PY = Path(__file__).resolve().parents[1] / "examples" / "recommender" / "code" / "inference.py"
MAX_BODY = 6 * 1024 * 1024
_JSON = b"application/json"
_TEXT = b"text/plain; charset=utf-8"


def _import_handlers(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("inference", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _State:
    handlers: ModuleType | None = None
    model: Any = None


_state = _State()


def _load() -> None:
    handlers = _import_handlers(Path(os.environ.get("INFERENCE_PY", str(INFERENCE_PY))))
    _state.model = handlers.model_fn(os.environ["MODEL_DIR"])
    _state.handlers = handlers


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = _JSON) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                _load()
            except Exception as e:
                await send({"type": "lifespan.startup.failed", "message": f"model_fn failed: {e!r}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _invoke(scope: Scope, receive: Receive, send: Send) -> None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            await _respond(send, 413, b"payload too large", _TEXT)
            return
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    content_type = accept = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value.decode("latin-1")
        elif key == b"accept":
            accept = value.decode("latin-1")
    h = _state.handlers
    assert h is not None
    try:
        result = h.output_fn(h.predict_fn(h.input_fn(b"".join(chunks), content_type), _state.model), accept)
    except Exception as e:
        await _respond(send, int(getattr(e, "status_code", 500)), str(e).encode(), _TEXT)
        return
    await _respond(send, 200, result.encode() if isinstance(result, str) else bytes(result))


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
    elif kind != "http":
        return
    elif scope["path"] == "/invocations" and scope["method"] == "POST":
        await _invoke(scope, receive, send)
    elif scope["path"] == "/ping" and scope["method"] == "GET":
        if _state.handlers is None:
            await _respond(send, 503, b'{"status": "Loading"}')
        else:
            await _respond(send, 200, b'{"status": "Healthy"}')
    else:
        await _respond(send, 404, b'{"error": "not found"}')
