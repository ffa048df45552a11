"""Handler resolution, in-process: context arity, async detection and the Context surface."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest

from moorage.serving.context import Context, system_properties
from moorage.serving.errors import StartupFailure
from moorage.serving.handlers import Handlers, load_handlers
from moorage.serving.settings import Arguments, load_settings

Load = Callable[[str], Handlers]


@pytest.fixture
def load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Load:
    """Resolves the handlers of an inference.py without leaking its import into other tests."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    monkeypatch.setenv("PYTHONPATH", "")

    def resolve(code: str) -> Handlers:
        (tmp_path / "code").mkdir(exist_ok=True)
        (tmp_path / "code" / "inference.py").write_text(textwrap.dedent(code))
        return load_handlers(load_settings(Arguments(tmp_path, tmp_path / "sockets", 1), {}))

    return resolve


def _contexts(handlers: Handlers) -> dict[str, bool]:
    return {hook.name: hook.takes_context for hook in handlers.hooks}


def test_context_arity_is_decided_once_from_the_signature(load: Load) -> None:
    handlers = load(
        """
        def input_fn(body, content_type, **kwargs):
            return body

        def predict_fn(data, model, context=None):
            return (data, context is not None)

        class Output:
            def __call__(self, prediction, accept, *args):
                return repr((prediction, accept, len(args)))

        output_fn = Output()
        """
    )
    assert _contexts(handlers) == {"input_fn": False, "predict_fn": True, "output_fn": True}
    assert handlers.needs_context and not handlers.is_async
    context = Context(system_properties("/m"), {})
    assert handlers.transform(None, "b", "t", "a", context) == "(('b', True), 'a', 1)"


def test_plain_chain_passes_no_context(load: Load) -> None:
    handlers = load(
        """
        def input_fn(body, content_type):
            return body + "|" + content_type

        def output_fn(prediction, accept):
            return prediction + "|" + accept
        """
    )
    assert not handlers.needs_context and handlers.uses_default_predict
    assert handlers.transform(str.upper, "x", "t", "a", None) == "X|T|a"


def test_async_handlers_are_detected(load: Load) -> None:
    handlers = load(
        """
        async def predict_fn(data, model):
            return data
        """
    )
    assert handlers.is_async
    assert [hook.is_async for hook in handlers.hooks] == [False, True, False]


@pytest.mark.parametrize(
    "code",
    [
        "def input_fn(body):\n    pass\n",
        "def input_fn(body, content_type, context, extra):\n    pass\n",
        "def input_fn(body, content_type, *, flag):\n    pass\n",
        "input_fn = 3\n",
    ],
    ids=["too-few", "too-many", "required-keyword", "not-callable"],
)
def test_unusable_handlers_fail_at_start_up(load: Load, code: str) -> None:
    with pytest.raises(StartupFailure, match="input_fn"):
        load(code)


def test_context_surface() -> None:
    headers = {b"content-type": b"text/csv", b"x-amzn-sagemaker-custom-attributes": b"a=1"}
    context = Context(system_properties("/opt/ml/model"), headers)
    assert context.system_properties == {
        "model_dir": "/opt/ml/model",
        "gpu_id": None,
        "batch_size": 1,
        "server_name": "moorage",
        "server_version": version("moorage"),
    }
    assert context.get_request_header(0, "Content-Type") == "text/csv"
    assert context.get_request_header(0, "missing") is None
    assert context.get_all_request_header(0)["content-type"] == "text/csv"
    assert context.custom_attributes == "a=1"
    request_id = context.get_request_id()
    assert request_id and context.request_ids == {0: request_id}
    context.set_response_content_type(0, "text/plain")
    context.set_response_status(201, "Created")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "b=2")
    assert context.get_response_content_type(0) == "text/plain"
    assert context.response_status == 201
    assert context.get_response_headers(0) == {"X-Amzn-SageMaker-Custom-Attributes": "b=2"}
    with pytest.raises(IndexError):
        context.get_request_header(1, "content-type")
    loading = Context(system_properties("/m"))
    assert loading.request_ids == {} and loading.get_request_id() is None
