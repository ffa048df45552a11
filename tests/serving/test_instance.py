"""The instance process end to end: start-up contract, handler chain, context and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import StartInstance
from .support import model_dir

CHAIN = """
    import json
    import os
    import sys

    def model_fn(model_dir):
        with open(os.path.join(model_dir, "scale.txt")) as f:
            return {"scale": int(f.read())}

    def input_fn(body, content_type):
        assert isinstance(body, str), type(body)
        return json.loads(body)

    def predict_fn(data, model):
        return [x * model["scale"] for x in data]

    def output_fn(prediction, accept):
        body = {
            "out": prediction,
            "accept": accept,
            "numpy_imported": "numpy" in sys.modules,
            "threads": [os.environ.get(f"{v}_NUM_THREADS") for v in ("OMP", "OPENBLAS", "MKL")],
        }
        return json.dumps(body), "application/vnd.test+json"
"""


def test_model_fn_runs_before_instance_json(tmp_path: Path, start_instance: StartInstance) -> None:
    marker = tmp_path / "loaded"
    model = model_dir(
        tmp_path,
        f"""
        import time

        def model_fn(model_dir):
            time.sleep(0.5)
            with open({str(marker)!r}, "w") as f:
                f.write("loaded")
            return lambda data: data
        """,
    )
    instance = start_instance(model)
    info = instance.wait_ready()
    assert marker.read_text() == "loaded"
    assert info["model_fn_seconds"] >= 0.5
    assert info["pid"] == instance.process.pid
    assert [w["index"] for w in info["workers"]] == [0]
    assert info["workers"][0]["address"] == str(instance.socket_dir / "w0.sock")
    ping = instance.request("GET", "/ping")
    assert (ping.status, ping.json()) == (200, {"status": "Healthy"})


def test_full_handler_chain(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(tmp_path, CHAIN)
    (model / "scale.txt").write_text("3")
    instance = start_instance(model, env={"MKL_NUM_THREADS": "4"})
    instance.wait_ready()
    for _ in range(3):  # several requests on one keep-alive connection
        reply = instance.invoke(b"[1, 2]", content_type="application/json", accept="*/*")
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/vnd.test+json"
        assert reply.json() == {
            "out": [3, 6],
            "accept": "application/json",
            "numpy_imported": False,  # no default codec was needed
            "threads": ["1", "1", "4"],  # set only where unset
        }
    reply = instance.invoke(b"[1]", content_type="application/json")
    assert reply.json()["accept"] == "application/json"


def test_default_accept_comes_from_the_environment(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(tmp_path, CHAIN)
    (model / "scale.txt").write_text("1")
    instance = start_instance(model, env={"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"})
    instance.wait_ready()
    assert instance.invoke(b"[1]", content_type="application/json").json()["accept"] == "text/csv"
    assert instance.invoke(b"[1]", content_type="application/json", accept="a/b").json()["accept"] == "a/b"


def test_context_taking_handlers(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(
        tmp_path,
        """
        import json

        def model_fn(model_dir, context):
            return {"model_dir": context.system_properties["model_dir"]}

        def input_fn(body, content_type, context):
            return {
                "body_type": type(body).__name__,
                "content_type": content_type,
                "header": context.get_request_header(0, "X-Extra"),
                "request_id": context.get_request_id(),
                "server": context.system_properties["server_name"],
                "attributes": context.custom_attributes,
            }

        def predict_fn(data, model, context):
            echo = "echo=" + str(data["attributes"])
            context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", echo)
            return dict(data, **model)

        def output_fn(prediction, accept, context=None):
            return json.dumps(prediction)
        """,
    )
    instance = start_instance(model)
    instance.wait_ready()
    reply = instance.invoke(
        b"\x00\x01",
        content_type="application/octet-stream",
        x_extra="hello",
        x_amzn_sagemaker_inference_id="inf-1",
        x_amzn_sagemaker_custom_attributes="trace=abc",
    )
    assert reply.status == 200, reply.text
    assert reply.json() == {
        "body_type": "bytes",
        "content_type": "application/octet-stream",
        "header": "hello",
        "request_id": "inf-1",
        "server": "moorage",
        "attributes": "trace=abc",
        "model_dir": str(model),
    }
    assert reply.headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace=abc"
    # A fresh context per request: nothing set above leaks into the next response.
    plain = instance.invoke(b"", content_type="application/octet-stream")
    assert plain.headers["x-amzn-sagemaker-custom-attributes"] == "echo=None"
    assert plain.json()["request_id"] not in ("inf-1", None)


def test_context_as_the_toolkit_and_multi_model_server_use_it(
    tmp_path: Path, start_instance: StartInstance
) -> None:
    """Handlers copied from the toolkit read request_processor, call metrics and status methods."""
    model = model_dir(
        tmp_path,
        """
        import json

        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept, context):
            props = context.request_processor[0].get_request_properties()
            context.metrics.add_time("PredictTime", 1.5)
            context.request_processor[0].report_status(201, "Made")
            context.request_processor[0].add_response_property("X-Amzn-SageMaker-Custom-Attributes", "rp")
            return json.dumps({
                "accept": props.get("accept"),
                "single": context.request_processor[0].get_request_property("Accept"),
                "status": list(context.get_response_status(0)),
                "version": context.system_properties["server_version"],
                "manifest": context.manifest,
            }), "application/json"
        """,
    )
    instance = start_instance(model)
    instance.wait_ready()
    reply = instance.invoke(b"{}", content_type="application/json", accept="application/json")
    assert reply.status == 201, reply.text
    body = reply.json()
    assert body["accept"] == body["single"] == "application/json"
    assert body["status"] == [201, "Made"]
    assert body["version"] and body["manifest"] is None
    assert reply.headers["x-amzn-sagemaker-custom-attributes"] == "rp"
    assert "metric PredictTime=1.5 ms" in instance.output()


def test_transform_fn(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(
        tmp_path,
        """
        def model_fn(model_dir):
            return "m"

        def transform_fn(model, body, content_type, accept):
            return body.upper() + model, "text/plain"
        """,
    )
    instance = start_instance(model)
    instance.wait_ready()
    reply = instance.invoke(b"a,b", content_type="text/csv")
    assert (reply.status, reply.text, reply.headers["content-type"]) == (200, "A,Bm", "text/plain")


def test_async_handlers(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(
        tmp_path,
        """
        import asyncio

        async def model_fn(model_dir):
            await asyncio.sleep(0)
            return 10

        async def predict_fn(data, model):
            await asyncio.sleep(0.01)
            return {"sum": int(data.sum()) + model}
        """,
    )
    instance = start_instance(model)
    instance.wait_ready()
    for n in range(3):
        reply = instance.invoke(json.dumps([1, 2, n]), content_type="application/json")
        assert (reply.status, reply.json()) == (200, {"sum": 13 + n})


def test_user_exception_gives_status_and_message_without_traceback(
    tmp_path: Path, start_instance: StartInstance
) -> None:
    model = model_dir(
        tmp_path,
        """
        class Teapot(Exception):
            status_code = 418

        class Odd(Exception):
            status_code = 200  # not an error status: ignored

        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept):
            if body == b"plain":
                raise ValueError("bad input, very bad")
            if body == b"teapot":
                raise Teapot("short and stout")
            if body == b"odd":
                raise Odd("odd")
            raise KeyError()
        """,
    )
    instance = start_instance(model, env={"MOORAGE_INSTANCE_ID": "i-test"})
    instance.wait_ready()
    cases = [
        (b"plain", 500, "bad input, very bad"),
        (b"teapot", 418, "short and stout"),
        (b"odd", 500, "odd"),
    ]
    for body, status, message in cases:
        reply = instance.invoke(body, content_type="application/octet-stream")
        assert (reply.status, reply.text) == (status, message)
        assert reply.headers["content-type"] == "text/plain; charset=utf-8"
        assert "Traceback" not in reply.text
    assert instance.invoke(b"empty", content_type="x/y").text == "KeyError"
    assert instance.request("GET", "/ping").status == 200  # still serving
    log = instance.output()
    assert log.count("Traceback") == 4
    assert "bad input, very bad" in log and "inference.py" in log
    assert "[i-test w0]" in log and "[i-test main]" in log


def test_unknown_path_and_wrong_method(tmp_path: Path, start_instance: StartInstance) -> None:
    instance = start_instance(model_dir(tmp_path, "def model_fn(model_dir):\n    return len\n"))
    instance.wait_ready()
    assert instance.request("GET", "/nope").status == 404
    assert instance.request("GET", "/invocations").status == 405
    reply = instance.request("GET", "/execution-parameters")
    assert reply.json() == {
        "MaxConcurrentTransforms": 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    # default predict_fn calls the model (here len) on the decoded JSON
    assert instance.invoke(b"[1, 2, 3]", content_type="application/json").json() == 3


def test_sagemaker_program_and_helper_modules(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(
        tmp_path,
        """
        import helper

        def model_fn(model_dir):
            return helper.MODEL
        """,
        program="serve_me.py",
        **{
            "helper.py": "MODEL = lambda data: 'from serve_me'\n",
            "inference.py": "raise SystemExit('wrong')\n",
        },
    )
    instance = start_instance(model, env={"SAGEMAKER_PROGRAM": "serve_me.py"})
    instance.wait_ready()
    reply = instance.invoke(b"{}", content_type="application/json", accept="application/json")
    assert reply.json() == "from serve_me"


def test_submit_directory(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(tmp_path, "raise SystemExit('not this one')\n")
    submitted = tmp_path / "submitted"
    submitted.mkdir()
    (submitted / "inference.py").write_text("def model_fn(model_dir):\n    return lambda data: 'submitted'\n")
    instance = start_instance(model, env={"SAGEMAKER_SUBMIT_DIRECTORY": str(submitted)})
    instance.wait_ready()
    assert instance.invoke(b"[]", content_type="application/json").json() == "submitted"


def test_workers_from_environment(tmp_path: Path, start_instance: StartInstance) -> None:
    instance = start_instance(
        model_dir(tmp_path, "def model_fn(model_dir):\n    return len\n"),
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "3"},
        workers=None,
    )
    info = instance.wait_ready()
    assert [w["index"] for w in info["workers"]] == [0, 1, 2]
    assert len({w["pid"] for w in info["workers"]}) == 3
    assert sorted(p.name for p in instance.socket_dir.glob("*.sock")) == ["w0.sock", "w1.sock", "w2.sock"]
    for index in range(3):
        assert instance.request("GET", "/ping", worker=index).status == 200
    assert instance.request("GET", "/execution-parameters").json()["MaxConcurrentTransforms"] == 3


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (
            "def model_fn(model_dir):\n    return {}['x']\n",
            "model_fn raised KeyError: 'x' (inference.py line 2)",
        ),
        (
            "import os\n\ndef model_fn(model_dir:\n    pass\n",
            "importing inference.py raised SyntaxError: ",
        ),
        (
            "import not_installed_anywhere\n",
            "importing inference.py raised ModuleNotFoundError: No module named 'not_installed_anywhere' "
            "(inference.py line 1)",
        ),
        (
            "def model_fn(d):\n    return 1\n\ndef transform_fn(m, b, c, a):\n    pass\n\n"
            "def input_fn(b, c):\n    pass\n",
            "inference.py defines transform_fn together with input_fn",
        ),
        ("def model_fn(d):\n    return 1\n", "model_fn returned a int, which cannot be called"),
        (
            "def predict_fn(data, model):\n    pass\n",
            "no model_fn to load the model: inference.py defines no model_fn",
        ),
        (None, "no model_fn to load the model: there is no "),
        (
            "def model_fn(d):\n    return len\n\ndef predict_fn(a, b, c, d):\n    pass\n",
            "predict_fn has the signature predict_fn(a, b, c, d); "
            "expected predict_fn(data, model[, context])",
        ),
    ],
    ids=[
        "model_fn-raises",
        "syntax-error",
        "import-error",
        "transform-clash",
        "not-callable",
        "no-model_fn",
        "no-module",
        "arity",
    ],
)
def test_start_up_failure(
    tmp_path: Path, start_instance: StartInstance, code: str | None, reason: str
) -> None:
    instance = start_instance(model_dir(tmp_path, code))
    got = instance.failure()
    assert got.startswith(reason), got
    assert "\n" not in got and len(got) <= 900
    if code and "SyntaxError" in reason:
        assert "(inference.py line 3)" in got
        assert "Traceback" in instance.output() or "SyntaxError" in instance.output()
    if "KeyError" in reason:
        assert "Traceback" in instance.output()


def test_bad_worker_count_fails(tmp_path: Path, start_instance: StartInstance) -> None:
    model = model_dir(tmp_path, "def model_fn(model_dir):\n    return len\n")
    instance = start_instance(model, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "zero"}, workers=None)
    assert "SAGEMAKER_MODEL_SERVER_WORKERS='zero'" in instance.failure()
