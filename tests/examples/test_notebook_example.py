"""The notebook example in-process: the committed data is what the generator writes, the handlers
answer (and refuse) as documented, and deploy.ipynb holds exactly deploy.py's cells."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notebook"
JSON = "application/json"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inference() -> Iterator[Any]:
    """code/inference.py imported the way an instance does: code/ first on sys.path."""
    code = str(EXAMPLE / "code")
    sys.path.insert(0, code)
    try:
        yield _load("notebook_inference", EXAMPLE / "code" / "inference.py")
    finally:
        sys.path.remove(code)
        for name in [n for n in sys.modules if n == "recommender" or n.startswith("recommender.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def model(inference: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    model_dir = tmp_path_factory.mktemp("model")
    for name in ("users.csv.gz", "items.csv.gz"):
        shutil.copyfile(EXAMPLE / "data" / name, model_dir / name)
    return inference.model_fn(str(model_dir))


def test_committed_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    generate = _load("notebook_generate_data", EXAMPLE / "generate_data.py")
    for path in generate.generate(tmp_path):
        committed = EXAMPLE / "data" / path.name
        assert path.read_bytes() == committed.read_bytes(), f"regenerate {committed}"
        assert committed.stat().st_size < 200_000


def test_recommendations_for_the_notebooks_user(inference: Any, model: Any) -> None:
    request = inference.input_fn(json.dumps({"user_id": "114521", "k": 3}), JSON)
    body, content_type = inference.output_fn(inference.predict_fn(request, model), JSON)
    answer = json.loads(body)
    assert content_type == JSON and answer["user_id"] == "114521"
    scores = [item["score"] for item in answer["recommendations"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert all(re.fullmatch(r"item-\d{4}", item["item_id"]) for item in answer["recommendations"])


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ('{"user_id": "114521", "k": 0}', JSON, 400),
        ('{"k": 3}', JSON, 400),
        ("not json", JSON, 400),
        ('{"user_id": "114521"}', "text/csv", 415),
    ],
)
def test_bad_requests(inference: Any, body: str, content_type: str, status: int) -> None:
    with pytest.raises(Exception) as caught:
        inference.input_fn(body, content_type)
    assert getattr(caught.value, "status_code", None) == status


def test_unknown_user_is_404(inference: Any, model: Any) -> None:
    request = inference.input_fn('{"user_id": "999999"}', JSON)
    with pytest.raises(LookupError) as caught:
        inference.predict_fn(request, model)
    assert getattr(caught.value, "status_code", None) == 404


def _script_cells(text: str) -> list[tuple[str, str]]:
    """deploy.py's ``# %%`` cells as (kind, source); markdown cells lose their ``# `` prefix."""
    cells = []
    for chunk in re.split(r"^# %%", text, flags=re.MULTILINE)[1:]:
        header, _, source = chunk.partition("\n")
        source = source.strip("\n")
        if header.strip() == "[markdown]":
            cells.append(("markdown", "\n".join(line.removeprefix("# ") for line in source.splitlines())))
        else:
            cells.append(("code", source))
    return cells


def test_notebook_has_the_scripts_cells_and_no_outputs() -> None:
    notebook = json.loads((EXAMPLE / "deploy.ipynb").read_text())
    assert notebook["nbformat"] == 4 and notebook["nbformat_minor"] >= 4
    assert notebook["metadata"]["kernelspec"]["language"] == "python"
    cells = notebook["cells"]
    for cell in cells:
        assert cell["cell_type"] in ("markdown", "code") and isinstance(cell["source"], list)
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    in_notebook = [(cell["cell_type"], "".join(cell["source"])) for cell in cells[1:]]  # [0] is the intro
    assert in_notebook == _script_cells((EXAMPLE / "deploy.py").read_text()), (
        "deploy.ipynb and deploy.py have drifted apart: keep their cells the same"
    )


def test_deploy_names_no_endpoint() -> None:
    text = (EXAMPLE / "deploy.py").read_text()
    assert "endpoint_url" not in text and "127.0.0.1" not in text and "localhost" not in text
    assert "os.environ" not in text  # boto3 and the SDK read the environment themselves
