"""What each kind of image resolves to, through a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.images import ImageError, ImageRegistry, resolve_image
from moorage.images.registry import from_dockerfile, from_requirements
from moorage.store import open_store

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture
def registry(tmp_path: Path) -> ImageRegistry:
    return ImageRegistry(open_store(tmp_path / "state"))


def test_unknown_and_missing(registry: ImageRegistry) -> None:
    plain = resolve_image("example/image:latest", registry)
    assert "not a known framework image and not registered" in plain.description
    assert plain.requirements == () and plain.command is None and plain.model_requirements
    assert "no image given" in resolve_image(None, None).description


def test_framework(registry: ImageRegistry) -> None:
    runtime = resolve_image(SKLEARN, registry)
    assert runtime.requirements == ("scikit-learn==1.2.1", "numpy<2")
    assert "SageMaker scikit-learn 1.2-1 framework image → built-in runtime" in runtime.description
    assert SKLEARN in runtime.label and "scikit-learn==1.2.1" in runtime.label


def test_registered_toolkit_dockerfile(tmp_path: Path, registry: ImageRegistry) -> None:
    (tmp_path / "entry.py").write_text(
        "from sagemaker_inference import model_server\nmodel_server.start_model_server()\n"
    )
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python:3.11-slim\nRUN pip install --no-cache-dir sagemaker-inference multi-model-server numpy\n"
        "ENV MODEL_FLAVOUR=test PATH=/opt/program:$PATH\nCOPY entry.py /usr/local/bin/\n"
        'ENTRYPOINT ["python", "/usr/local/bin/entry.py"]\n'
    )
    registry.add(from_dockerfile("my/toolkit:1", dockerfile))
    runtime = resolve_image("my/toolkit:1", registry)
    assert runtime.command is None and runtime.python is None
    assert runtime.requirements == ("sagemaker-inference", "numpy")
    assert runtime.environment == {"MODEL_FLAVOUR": "test"}
    assert "registered from Dockerfile" in runtime.description
    assert "only starts the SageMaker inference toolkit's model server" in runtime.description
    assert "left out: multi-model-server" in runtime.description
    registered = registry.list()
    assert [image.uri for image in registered] == ["my/toolkit:1"]


def test_registered_own_server(tmp_path: Path, registry: ImageRegistry) -> None:
    requirements = tmp_path / "reqs.txt"
    requirements.write_text("flask==3.0.3\n")
    registry.add(from_requirements("my/server:2", "3.11", requirements, "python app.py", {"A": "1"}))
    runtime = resolve_image("my/server:2", registry)
    assert runtime.command == ("python", "app.py", "serve")
    assert runtime.requirements == ("flask==3.0.3",) and not runtime.model_requirements
    assert runtime.environment == {"A": "1"}
    assert "its own server `python app.py serve`" in runtime.description
    assert registry.remove("my/server:2") and resolve_image("my/server:2", registry).command is None


def test_python_too_old_is_refused_unless_overridden(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.9-slim\nRUN pip install numpy\n")
    with pytest.raises(ImageError, match=r"Python 3.9.*Pass --python 3.11"):
        from_dockerfile("old:1", dockerfile)
    image = from_dockerfile("old:1", dockerfile, python="3.11")
    assert image.python == "3.11"
    assert image.python_note == "the image asks for Python 3.9; --python 3.11 overrides it"
    with pytest.raises(ImageError, match="not a Python version"):
        from_requirements("bad:1", "three")
