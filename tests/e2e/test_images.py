"""Images without Docker, end to end: `moorage image add` as a subprocess on the server's state dir, then
endpoints whose models name those images, driven by boto3."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tests.support.images import (
    check_image_with_its_own_server,
    deploy_image,
    endpoint_log,
    image_add,
    invoke_json,
)
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer
from tests.support.pypi import needs_pypi

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

SKLEARN_VERSION = """
import json, sklearn

def model_fn(model_dir):
    return sklearn.__version__

def predict_fn(data, model):
    return {"sklearn": model}
"""


def test_image_with_its_own_server(
    server: RunningServer, sm: Any, smr: Any, echo_model: str, tmp_path: Path
) -> None:
    check_image_with_its_own_server(server, sm, smr, echo_model, tmp_path)


@needs_pypi
def test_toolkit_dockerfile_is_served_by_the_built_in_runtime(
    server: RunningServer, sm: Any, smr: Any, echo_model: str, tmp_path: Path
) -> None:
    (tmp_path / "dockerd-entrypoint.py").write_text(TOOLKIT_ENTRYPOINT)
    (tmp_path / "Dockerfile").write_text(TOOLKIT_DOCKERFILE)
    uri = "123456789012.dkr.ecr.us-west-2.amazonaws.com/toolkit:1"
    out = image_add(server, uri, "--from-dockerfile", str(tmp_path / "Dockerfile"))
    assert "multi-model-server" in out  # left out, and said so
    endpoint = deploy_image(sm, uri, echo_model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert invoke_json(smr, endpoint, {"x": 1})["greeting"] == "hello from the image"
    log = endpoint_log(server, endpoint)
    assert f"image {uri}: registered from Dockerfile" in log
    assert "only starts the SageMaker inference toolkit's model server" in log
    sm.delete_endpoint(EndpointName=endpoint)


@needs_pypi
def test_sklearn_framework_image_gets_its_pinned_version(
    server: RunningServer, sm: Any, smr: Any, tmp_path: Path
) -> None:
    model = build_model_tar(tmp_path / "model.tar.gz", textwrap.dedent(SKLEARN_VERSION)).as_uri()
    uri = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    endpoint = deploy_image(sm, uri, model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    assert invoke_json(smr, endpoint, {}) == {"sklearn": "1.2.1"}
    log = endpoint_log(server, endpoint)
    assert "SageMaker scikit-learn 1.2-1 framework image → built-in runtime with scikit-learn==1.2.1" in log
    sm.delete_endpoint(EndpointName=endpoint)
