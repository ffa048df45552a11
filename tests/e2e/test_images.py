"""Images without Docker, end to end: `moorage image add` as a subprocess on the server's state dir, then
endpoints whose models name those images, driven by boto3."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.e2e.conftest import unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer
from tests.support.pypi import needs_pypi

SLOW_WAIT = {"Delay": 1, "MaxAttempts": 600}  # environments are built from PyPI


TOOLKIT_ENTRYPOINT = """\
from sagemaker_inference import model_server

model_server.start_model_server(handler_service="serving.handler")
"""

TOOLKIT_DOCKERFILE = """\
FROM python:3.11-slim
RUN pip install --no-cache-dir sagemaker-inference multi-model-server numpy
ENV GREETING_SUFFIX=" from the image"
COPY dockerd-entrypoint.py /usr/local/bin/dockerd-entrypoint.py
ENTRYPOINT ["python", "/usr/local/bin/dockerd-entrypoint.py"]
CMD ["serve"]
"""

OWN_SERVER = """\
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

assert sys.argv[-1] == "serve", sys.argv
with open(os.path.join(os.environ["SM_MODEL_DIR"], "weights.txt")) as f:
    WEIGHTS = f.read().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(200 if self.path == "/ping" else 404, b"{}")

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = {"weights": WEIGHTS, "got": json.loads(body), "flavour": os.environ.get("FLAVOUR")}
        self.answer(200, json.dumps(reply).encode())


ThreadingHTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler).serve_forever()
"""

SKLEARN_VERSION = """
import json, sklearn

def model_fn(model_dir):
    return sklearn.__version__

def predict_fn(data, model):
    return {"sklearn": model}
"""


def _image_add(server: RunningServer, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "moorage", "image", "add", *args, "--state-dir", str(server.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _log(server: RunningServer, endpoint: str) -> str:
    return (server.state_dir / "logs" / f"{endpoint}.log").read_text(errors="replace")


def _deploy_image(sm: Any, image: str, model: str, **kwargs: Any) -> str:
    name = unique("img")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": model,
            "Environment": kwargs.pop("environment", {}),
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=kwargs.pop("wait", SLOW_WAIT))
    return name


def _invoke(smr: Any, endpoint: str, payload: object) -> Any:
    response = smr.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=json.dumps(payload)
    )
    return json.loads(response["Body"].read())


def test_image_with_its_own_server(
    server: RunningServer, sm: Any, smr: Any, echo_model: str, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(OWN_SERVER)
    uri = "123456789012.dkr.ecr.us-west-2.amazonaws.com/own-server:1"
    out = _image_add(server, uri, "--python", "3.11", "--command", f"python {app}", "--env", "FLAVOUR=plain")
    assert "served by its own server" in out
    endpoint = _deploy_image(sm, uri, echo_model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert _invoke(smr, endpoint, {"x": 1}) == {"weights": "hello", "got": {"x": 1}, "flavour": "plain"}
    assert _invoke(smr, endpoint, [2]) == {"weights": "hello", "got": [2], "flavour": "plain"}  # kept alive
    log = _log(server, endpoint)
    assert f"image {uri}: registered from command line" in log and "its own server" in log
    listing = subprocess.run(
        [sys.executable, "-m", "moorage", "image", "ls", "--state-dir", str(server.state_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert uri in listing and "URI" in listing.splitlines()[0]
    sm.delete_endpoint(EndpointName=endpoint)


@needs_pypi
def test_toolkit_dockerfile_is_served_by_the_built_in_runtime(
    server: RunningServer, sm: Any, smr: Any, echo_model: str, tmp_path: Path
) -> None:
    (tmp_path / "dockerd-entrypoint.py").write_text(TOOLKIT_ENTRYPOINT)
    (tmp_path / "Dockerfile").write_text(TOOLKIT_DOCKERFILE)
    uri = "123456789012.dkr.ecr.us-west-2.amazonaws.com/toolkit:1"
    out = _image_add(server, uri, "--from-dockerfile", str(tmp_path / "Dockerfile"))
    assert "multi-model-server" in out  # left out, and said so
    endpoint = _deploy_image(sm, uri, echo_model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert _invoke(smr, endpoint, {"x": 1})["greeting"] == "hello from the image"
    log = _log(server, endpoint)
    assert f"image {uri}: registered from Dockerfile" in log
    assert "only starts the SageMaker inference toolkit's model server" in log
    sm.delete_endpoint(EndpointName=endpoint)


@needs_pypi
def test_sklearn_framework_image_gets_its_pinned_version(
    server: RunningServer, sm: Any, smr: Any, tmp_path: Path
) -> None:
    model = build_model_tar(tmp_path / "model.tar.gz", textwrap.dedent(SKLEARN_VERSION)).as_uri()
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    endpoint = _deploy_image(sm, uri, model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert _invoke(smr, endpoint, {}) == {"sklearn": "1.2.1"}
    assert "SageMaker scikit-learn 1.2-1 framework image → built-in runtime with scikit-learn==1.2.1" in _log(
        server, endpoint
    )
    sm.delete_endpoint(EndpointName=endpoint)
