"""The instance main: load the model once (warm before ready), then hand over to the supervisor.

Launch: `python -m moorage.serving --model-dir DIR --socket-dir SOCKDIR [--workers N]`. Readiness is
SOCKDIR/instance.json; a start-up failure is SOCKDIR/failure.json plus exit status 3.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moorage.serving import logs, memory
from moorage.serving.app import App
from moorage.serving.context import Context, system_properties
from moorage.serving.errors import StartupFailure
from moorage.serving.failure import describe, one_line
from moorage.serving.handlers import Handlers, Hook, call_hook, load_handlers
from moorage.serving.invocations import Invoker
from moorage.serving.settings import Settings, load_settings, parse_arguments
from moorage.serving.statefiles import StateFiles
from moorage.serving.supervisor import Supervisor

logger = logging.getLogger("moorage.serving")

FAILED = 3


@dataclass(frozen=True, slots=True)
class Loaded:
    handlers: Handlers
    model: Any
    model_fn_seconds: float


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # print() in handlers reaches the log promptly
    logs.configure("main", os.environ.get("MOORAGE_INSTANCE_ID") or None, logging.INFO)
    args.socket_dir.mkdir(parents=True, exist_ok=True)
    files = StateFiles(args.socket_dir)
    files.clear()
    try:
        settings = load_settings(args, os.environ)
        logs.configure("main", settings.instance_id, settings.log_level)
        memory.apply_limit(os.environ)  # before the model loads; the workers inherit it
        loaded = load(settings)
    except StartupFailure as failure:
        return _fail(files, failure.reason, failure.__cause__)
    except Exception as exc:
        return _fail(files, one_line(f"the instance failed to start: {type(exc).__name__}: {exc}"), exc)
    system = system_properties(str(settings.model_dir))
    invoker = Invoker(loaded.handlers, loaded.model, settings.default_accept, system)
    app = App(invoker, settings.workers, loaded.handlers.is_async)
    try:
        supervisor = Supervisor(settings, app, files, loaded.model_fn_seconds)
    except OSError as exc:  # TCP: the address cannot be listened on
        return _fail(files, one_line(f"the instance cannot listen on {settings.tcp_host}: {exc}"), exc)
    return supervisor.run()


def load(settings: Settings) -> Loaded:
    """pre_model_fn -> model_fn -> model_warmup_fn, in this process, before any worker exists."""
    handlers = load_handlers(settings)
    model_dir = str(settings.model_dir)
    context = Context(system_properties(model_dir))
    if handlers.pre_model_fn is not None:
        _run(handlers.pre_model_fn, settings, context, model_dir)
    started = time.perf_counter()
    model = _run(handlers.model_fn, settings, context, model_dir)
    seconds = time.perf_counter() - started
    logger.info("model_fn took %.3f s", seconds)
    if handlers.uses_default_predict and not callable(model):
        raise StartupFailure(
            f"model_fn returned a {type(model).__name__}, which cannot be called, and {settings.program} "
            "defines no predict_fn: define predict_fn(data, model) (or transform_fn)"
        )
    if handlers.model_warmup_fn is not None:
        _run(handlers.model_warmup_fn, settings, context, model_dir, model)
    return Loaded(handlers, model, seconds)


def _run(hook: Hook, settings: Settings, context: Context, *args: Any) -> Any:
    try:
        return call_hook(hook, *args, context=context)
    except BaseException as exc:
        raise StartupFailure(describe(exc, hook.name, settings.code_dir)) from exc


def _fail(files: StateFiles, reason: str, cause: BaseException | None) -> int:
    if cause is not None and not isinstance(cause, StartupFailure):
        traceback.print_exception(cause)
    logger.error("the instance cannot start: %s", reason)
    files.write_failure(reason)
    return FAILED
