"""Images without Docker, shared by the e2e tests of each compute provider: `moorage image add` as a
subprocess on a server's state dir, and endpoints whose models name those images.

(Kept here rather than in tests/e2e/test_images.py so that other modules can use them without importing
that module, whose PyPI marker probes pypi.org when it is imported.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import unique
from tests.support.moorage_server import RunningServer

SLOW_WAIT = {"Delay": 1, "MaxAttempts": 600}  # environments are built from PyPI

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


def image_add(server: RunningServer, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "moorage", "image", "add", *args, "--state-dir", str(server.state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def endpoint_log(server: RunningServer, endpoint: str) -> str:
    return (server.state_dir / "logs" / f"{endpoint}.log").read_text(errors="replace")


def deploy_image(sm: Any, image: str, model: str, **kwargs: Any) -> str:
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


def invoke_json(smr: Any, endpoint: str, payload: object) -> Any:
    response = smr.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=json.dumps(payload)
    )
    return json.loads(response["Body"].read())


def check_image_with_its_own_server(
    server: RunningServer, sm: Any, smr: Any, model: str, tmp_path: Path
) -> None:
    """`moorage image add --command` then an endpoint served by that command's own HTTP server."""
    app = tmp_path / "app.py"
    app.write_text(OWN_SERVER)
    uri = "123456789012.dkr.ecr.us-west-2.amazonaws.com/own-server:1"
    out = image_add(server, uri, "--python", "3.11", "--command", f"python {app}", "--env", "FLAVOUR=plain")
    assert "served by its own server" in out
    endpoint = deploy_image(sm, uri, model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert invoke_json(smr, endpoint, {"x": 1}) == {"weights": "hello", "got": {"x": 1}, "flavour": "plain"}
    # the same connection, kept alive
    assert invoke_json(smr, endpoint, [2]) == {"weights": "hello", "got": [2], "flavour": "plain"}
    log = endpoint_log(server, endpoint)
    assert f"image {uri}: registered from command line" in log and "its own server" in log
    listing = subprocess.run(
        [sys.executable, "-m", "moorage", "image", "ls", "--state-dir", str(server.state_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert uri in listing and "URI" in listing.splitlines()[0]
    sm.delete_endpoint(EndpointName=endpoint)
