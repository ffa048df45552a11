"""The Dockerfile subset: what is understood, and what is refused with its line number."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.images.dockerfile import DockerfileError, parse_dockerfile
from moorage.images.toolkit import drop_server_packages, starts_toolkit_server

ENTRYPOINT_SCRIPT = """\
from sagemaker_inference import model_server

model_server.start_model_server(handler_service="serving.handler")
"""

TOOLKIT_DOCKERFILE = """\
# a toolkit image, as the SageMaker examples write it
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim AS base
LABEL maintainer="someone"
RUN pip install --no-cache-dir -U pip && \\
    pip install --no-cache-dir sagemaker-inference multi-model-server \\
        numpy
COPY requirements.txt /opt/requirements.txt
RUN python -m pip install --quiet -r /opt/requirements.txt
ENV PYTHONUNBUFFERED=TRUE MODEL_NAME="my model"
ENV LEGACY value with spaces
WORKDIR /usr/local/bin
COPY dockerd-entrypoint.py .
EXPOSE 8080
ENTRYPOINT ["python", "/usr/local/bin/dockerd-entrypoint.py"]
CMD ["serve"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "dockerd-entrypoint.py").write_text(ENTRYPOINT_SCRIPT)
    (tmp_path / "requirements.txt").write_text("# pinned\npandas==2.2.2  # comment\n\n")
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    return path


def test_toolkit_dockerfile(tmp_path: Path) -> None:
    image = parse_dockerfile(_write(tmp_path, TOOLKIT_DOCKERFILE))
    assert image.python == "3.11"
    assert image.requirements == ["sagemaker-inference", "multi-model-server", "numpy", "pandas==2.2.2"]
    assert image.environment == {
        "PYTHONUNBUFFERED": "TRUE",
        "MODEL_NAME": "my model",
        "LEGACY": "value with spaces",
    }
    command = image.command()
    assert command == ["python", str(tmp_path / "dockerd-entrypoint.py"), "serve"]
    assert starts_toolkit_server(command)
    kept, dropped = drop_server_packages(image.requirements)
    assert dropped == ["multi-model-server"] and "sagemaker-inference" in kept


def test_own_server_shell_form(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import http.server\n")
    path = tmp_path / "Dockerfile"
    path.write_text(
        "FROM docker.io/library/python:3.12.4-bookworm\nCOPY app.py /app/\nCMD python /app/app.py\n"
    )
    image = parse_dockerfile(path)
    assert image.python == "3.12"
    command = image.command()
    assert command == ["/bin/sh", "-c", "python /app/app.py", "serve"]
    assert not starts_toolkit_server(command)


def test_framework_base_image(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "FROM 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3\n"
        "RUN pip3 install lightgbm==4.3.0\n"
    )
    image = parse_dockerfile(path)
    assert image.python is None and image.base is not None
    assert image.requirements == ["scikit-learn==1.2.1", "numpy<2", "lightgbm==4.3.0"]
    assert image.command() is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("FROM python:3.11\nRUN apt-get update && apt-get install -y gcc\n", 2, "only `pip install"),
        ("FROM ubuntu:22.04\n", 1, "python:X.Y"),
        ("FROM python:3.11 AS build\nRUN pip install x\nFROM python:3.11-slim\n", 3, "multi-stage"),
        ("FROM python:3.11\nCOPY --from=build /x /x\n", 2, "multi-stage"),
        ("FROM python:3.11\n\n# comment\nUSER nobody\n", 4, "USER is not supported"),
        ("FROM python:3.11\nRUN pip install \\\n  --extra-index-url https://x y\n", 2, "--extra-index-url"),
        ("FROM python:3.11\nRUN pip install x; rm -rf /tmp\n", 2, "only `pip install"),
        ("FROM python:3.11\nADD https://example.com/x.tar.gz /x\n", 2, "URL"),
        ("FROM python:3.11\nCOPY missing.txt /x\n", 2, "no such file"),
        ("RUN pip install x\n", 1, "before FROM"),
    ],
)
def test_refused_with_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    with pytest.raises(DockerfileError) as refused:
        parse_dockerfile(path)
    message = str(refused.value)
    assert f"Dockerfile:{line}:" in message and words in message


def test_toolkit_detection() -> None:
    assert starts_toolkit_server(["torchserve", "--start", "--model-store", "/opt/ml/model"])
    assert starts_toolkit_server(
        ["python", "-c", "from sagemaker_inference import model_server as m; m.start_model_server()"]
    )
    assert starts_toolkit_server(["/bin/sh", "-c", "multi-model-server --start --mms-config x", "serve"])
    assert not starts_toolkit_server(["uvicorn", "app:app", "--port", "8080"])
    assert not starts_toolkit_server(["python", "/nonexistent/app.py", "serve"])
