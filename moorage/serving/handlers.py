"""Loads inference.py once and resolves its hooks into a `Handlers` record of ready-to-call callables.

Everything the sagemaker-inference toolkit decides per call is decided here, once: whether a hook takes
the trailing `context` argument (from its signature), whether it is `async def`, and whether the
request path is `transform_fn` or `input_fn` -> `predict_fn` -> `output_fn`.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from moorage.serving import defaults
from moorage.serving.context import Context
from moorage.serving.errors import StartupFailure
from moorage.serving.failure import describe
from moorage.serving.settings import Settings

# hook name -> its arguments without the context
SIGNATURES: dict[str, tuple[str, ...]] = {
    "pre_model_fn": ("model_dir",),
    "model_fn": ("model_dir",),
    "model_warmup_fn": ("model_dir", "model"),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "input_data", "content_type", "accept"),
}
_CHAIN = ("input_fn", "predict_fn", "output_fn")

# (model, body, content_type, accept, context) -> response body, or (body, content type); maybe awaitable
Transform = Callable[[Any, Any, str | None, str, Context | None], Any]


@dataclass(frozen=True, slots=True)
class Hook:
    """One user (or default) function and how to call it."""

    name: str
    fn: Callable[..., Any]
    takes_context: bool
    is_async: bool
    is_default: bool = False

    def bind(self) -> Callable[..., Any]:
        """A callable that takes the context last, whether or not the hook wants it."""
        fn = self.fn
        if self.takes_context:
            return fn
        arity = len(SIGNATURES[self.name])
        if arity == 1:
            return lambda a, context: fn(a)
        if arity == 2:
            return lambda a, b, context: fn(a, b)
        return lambda a, b, c, d, context: fn(a, b, c, d)


@dataclass(frozen=True, slots=True)
class Handlers:
    """The resolved hooks of one model."""

    model_fn: Hook
    pre_model_fn: Hook | None
    model_warmup_fn: Hook | None
    transform: Transform
    hooks: tuple[Hook, ...]  # the hooks on the request path
    is_async: bool
    needs_context: bool

    @property
    def uses_default_predict(self) -> bool:
        return any(hook.name == "predict_fn" and hook.is_default for hook in self.hooks)


def load_handlers(settings: Settings) -> Handlers:
    """Imports the user module (if there is one) and resolves its hooks; raises StartupFailure."""
    module = import_program(settings)
    found = {name: _lookup(module, name, settings.program) for name in SIGNATURES}
    if found["transform_fn"] is not None:
        clash = [name for name in _CHAIN if found[name] is not None]
        if clash:
            raise StartupFailure(
                f"{settings.program} defines transform_fn together with {', '.join(clash)}: define either "
                "transform_fn or input_fn/predict_fn/output_fn, not both"
            )
        hooks: tuple[Hook, ...] = (_hook("transform_fn", found["transform_fn"]),)
    else:
        hooks = tuple(_hook_or_default(name, found[name]) for name in _CHAIN)
    model_fn = found["model_fn"] or defaults.missing_model_fn(settings.program_file, module is not None)
    pre_model_fn, model_warmup_fn = found["pre_model_fn"], found["model_warmup_fn"]
    is_async = any(hook.is_async for hook in hooks)
    return Handlers(
        model_fn=_hook("model_fn", model_fn, found["model_fn"] is None),
        pre_model_fn=_hook("pre_model_fn", pre_model_fn) if pre_model_fn else None,
        model_warmup_fn=_hook("model_warmup_fn", model_warmup_fn) if model_warmup_fn else None,
        transform=_compose_async(hooks) if is_async else _compose(hooks),
        hooks=hooks,
        is_async=is_async,
        needs_context=any(hook.takes_context for hook in hooks),
    )


def import_program(settings: Settings) -> ModuleType | None:
    """Imports code/<SAGEMAKER_PROGRAM> with the code directory first on sys.path, or None if absent."""
    code_dir = str(settings.code_dir)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    # Processes the user's code starts find its helper modules too, as with the toolkit.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [code_dir, os.environ.get("PYTHONPATH")]))
    path = settings.program_file
    if not path.is_file():
        return None
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StartupFailure(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so pickle, dataclasses and typing can find the module by name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        raise StartupFailure(describe(exc, f"importing {path.name}", settings.code_dir)) from exc
    return module


def call_hook(hook: Hook, *args: Any, context: Context | None = None) -> Any:
    """Runs a load-time hook; an `async def` one runs to completion on a temporary event loop."""
    result = hook.bind()(*args, context)
    if hook.is_async:
        import asyncio

        return asyncio.run(result)
    return result


def _lookup(module: ModuleType | None, name: str, program: str) -> Callable[..., Any] | None:
    value = getattr(module, name, None)
    if value is None:
        return None
    if not callable(value):
        raise StartupFailure(f"{name} in {program} is a {type(value).__name__}, not a function")
    return value  # type: ignore[no-any-return]


def _hook(name: str, fn: Callable[..., Any], is_default: bool = False) -> Hook:
    return Hook(name, fn, _takes_context(name, fn), _is_async(fn), is_default)


def _hook_or_default(name: str, fn: Callable[..., Any] | None) -> Hook:
    return _hook(name, fn) if fn is not None else _hook(name, getattr(defaults, name), is_default=True)


def _takes_context(name: str, fn: Callable[..., Any]) -> bool:
    """Counts positional parameters like the toolkit: one more than the hook's arguments takes the context.

    Unlike the toolkit, `**kwargs` and defaulted keyword-only parameters are ignored (the toolkit counts
    them and then fails on every call), and a signature that can never be called fails at start-up.
    """
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: call them without context
        return False
    expected = len(SIGNATURES[name])
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    keyword_only = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    usage = f"{name}({', '.join(SIGNATURES[name])}[, context])"
    if len(required) > expected + 1 or (len(positional) < expected and not varargs) or keyword_only:
        raise StartupFailure(f"{name} has the signature {name}{inspect.signature(fn)}; expected {usage}")
    return len(positional) > expected or varargs


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _compose(hooks: tuple[Hook, ...]) -> Transform:
    if len(hooks) == 1:
        return hooks[0].bind()
    if not any(hook.takes_context for hook in hooks):
        return _compose_plain(hooks[0].fn, hooks[1].fn, hooks[2].fn)
    decode, predict, encode = (hook.bind() for hook in hooks)

    def transform(
        model: Any, body: Any, content_type: str | None, accept: str, context: Context | None
    ) -> Any:
        return encode(predict(decode(body, content_type, context), model, context), accept, context)

    return transform


def _compose_plain(
    decode: Callable[..., Any], predict: Callable[..., Any], encode: Callable[..., Any]
) -> Transform:
    """The common case, no hook takes a context: as cheap as calling the three functions by hand."""

    def transform(
        model: Any, body: Any, content_type: str | None, accept: str, context: Context | None
    ) -> Any:
        return encode(predict(decode(body, content_type), model), accept)

    return transform


def _compose_async(hooks: tuple[Hook, ...]) -> Transform:
    steps = [_awaitable(hook) for hook in hooks]
    if len(steps) == 1:
        return steps[0]
    decode, predict, encode = steps

    async def transform(
        model: Any, body: Any, content_type: str | None, accept: str, context: Context | None
    ) -> Any:
        data = await decode(body, content_type, context)
        return await encode(await predict(data, model, context), accept, context)

    return transform


def _awaitable(hook: Hook) -> Callable[..., Awaitable[Any]]:
    fn = hook.bind()
    if hook.is_async:
        return fn

    async def call(*args: Any) -> Any:
        return fn(*args)

    return call
