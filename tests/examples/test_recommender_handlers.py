"""The recommender example in-process: data generation is reproducible and the four handlers
answer correctly, including the HTTP status each client error maps to."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recommender"
JSON = "application/json"


def _load(name: str, path: Path) -> ModuleType:
    # exec without registering in sys.modules, as a model server loading code/inference.py may do
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load("recommender_generate_data", EXAMPLE / "generate_data.py")
inference = _load("recommender_inference", EXAMPLE / "code" / "inference.py")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(gen.generate(tmp_path_factory.mktemp("model"), users=200, movies=300, dim=16, seed=7))


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Any:
    return inference.model_fn(str(model_dir))


def _invoke(model: Any, body: str | bytes, content_type: str | None = JSON, accept: str | None = JSON) -> Any:
    pred = inference.predict_fn(inference.input_fn(body, content_type), model)
    return json.loads(inference.output_fn(pred, accept))


def test_generate_is_byte_identical_and_well_formed(tmp_path: Path) -> None:
    a = gen.generate(tmp_path / "a", users=50, movies=70, dim=8, seed=3)
    b = gen.generate(tmp_path / "b", users=50, movies=70, dim=8, seed=3)
    c = gen.generate(tmp_path / "c", users=50, movies=70, dim=8, seed=4)
    for part in ("user_vectors/000.gz", "movie_vectors/000.gz"):
        assert (a / part).read_bytes() == (b / part).read_bytes()
        assert (a / part).read_bytes() != (c / part).read_bytes()
    lines = gzip.decompress((a / "movie_vectors/000.gz").read_bytes()).decode().splitlines()
    assert lines[0] == "id," + ",".join(f"f{j}" for j in range(8))
    assert [ln.split(",", 1)[0] for ln in lines[1:]] == [f"m{i}" for i in range(70)]
    # the text holds the generated float32 values to the printed precision
    rng = np.random.default_rng(3)
    gen.random_vectors(rng, 50, 8)
    movies = gen.random_vectors(rng, 70, 8)
    parsed = np.array([[float(x) for x in ln.split(",")[1:]] for ln in lines[1:]])
    np.testing.assert_allclose(parsed, movies, atol=1e-8)


def _py_format(v: float) -> str:
    text = f"{abs(v):.8f}".rstrip("0")
    text += "0" if text.endswith(".") else ""
    return ("-" if v < 0 and round(abs(v) * 1e8) else "") + text


def test_format_rows_matches_python_formatting() -> None:
    vals = np.array([[0.0, -0.0, 1.5, -2.25, 123456.1234567, -1e-9, 4e-9, 6e-9, -0.0123]], np.float32)
    text = gen.format_rows("x", 9, vals).decode()
    assert text == "x9," + ",".join(_py_format(v) for v in vals[0].astype(np.float64).tolist()) + "\n"
    assert text.startswith("x9,0.0,0.0,1.5,-2.25,123456.125,0.0,0.0,0.00000001,-0.0123")


def test_model_fn_loads_ids_and_vectors(model: Any, model_dir: Path) -> None:
    assert model.user_vecs.shape == (200, 16) and model.movie_vecs.shape == (300, 16)
    assert model.user_vecs.dtype == np.float32 and model.movie_vecs.flags.c_contiguous
    assert model.movie_ids[:3] == ["m0", "m1", "m2"] and model.user_index["u199"] == 199


@pytest.mark.parametrize("k", [1, 10, 299, 300, 1000])
def test_top_k_equals_full_sort(model: Any, k: int) -> None:
    for user in ("u0", "u42", "u199"):
        out = _invoke(model, json.dumps({"user_id": user, "k": k}))
        scores = model.movie_vecs @ model.user_vecs[model.user_index[user]]
        ref = np.argsort(-scores, kind="stable")[: min(k, 300)]
        assert out["user_id"] == user
        assert [next(iter(r)) for r in out["recommendations"]] == [f"m{i}" for i in ref]
        got = [next(iter(r.values())) for r in out["recommendations"]]
        np.testing.assert_allclose(got, scores[ref], rtol=1e-6)


def test_defaults_and_lenient_headers(model: Any) -> None:
    out = _invoke(model, b'{"user_id": "u1"}', "application/json; charset=utf-8", None)
    assert len(out["recommendations"]) == 10
    for accept in ("*/*", "application/*", "text/csv, application/json;q=0.5", "Application/JSON"):
        assert len(_invoke(model, '{"user_id": "u1", "k": 2}', JSON, accept)["recommendations"]) == 2


@pytest.mark.parametrize("content_type", ["text/csv", "text/plain", None, "", "application/jsonl"])
def test_wrong_content_type_is_415(model: Any, content_type: str | None) -> None:
    with pytest.raises(Exception) as e:
        inference.input_fn('{"user_id": "u1"}', content_type)
    assert e.value.status_code == 415
    assert "application/json" in str(e.value)


@pytest.mark.parametrize("accept", ["text/csv", "application/x-npy", "text/*"])
def test_wrong_accept_is_406(model: Any, accept: str) -> None:
    pred = inference.predict_fn(inference.input_fn('{"user_id": "u1"}', JSON), model)
    with pytest.raises(Exception) as e:
        inference.output_fn(pred, accept)
    assert e.value.status_code == 406
    assert accept in str(e.value)


def test_unknown_user_is_404(model: Any) -> None:
    req = inference.input_fn('{"user_id": "x"}', JSON)
    with pytest.raises(Exception) as e:
        inference.predict_fn(req, model)
    assert e.value.status_code == 404
    assert str(e.value) == "unknown user_id 'x'"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"user_id": "u1", "k": 0}', "k:"),
        ('{"user_id": "u1", "k": "ten"}', "k:"),
        ('{"user_id": 12}', "user_id:"),
        ('{"k": 3}', "user_id:"),
        ('{"user_id": "u1", "k": ', "invalid request"),
        ("[]", "invalid request"),
        (b"\xff\xfe", "invalid request"),
    ],
)
def test_invalid_body_is_400(body: str | bytes, fragment: str) -> None:
    with pytest.raises(Exception) as e:
        inference.input_fn(body, JSON)
    assert e.value.status_code == 400
    assert fragment in str(e.value)
    assert "Traceback" not in str(e.value)


def test_inference_imports_only_numpy_and_pydantic() -> None:
    source = (EXAMPLE / "code" / "inference.py").read_text()
    lines = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    imported = {ln.split()[1].split(".")[0] for ln in lines}
    third_party = imported - set(sys.stdlib_module_names)
    assert third_party == {"numpy", "pydantic"}
    assert not (EXAMPLE / "code" / "requirements.txt").exists()
