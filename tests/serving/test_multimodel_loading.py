"""A multi-model instance loads models on demand: answers per TargetModel, cache headers, one load for
concurrent first requests, load failures retried, missing and invalid targets, ModelNotReady."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.serving.multimodel_support import StartMultiModel, counting_model, eventually, timings
from tests.support.models import build_model_tar


def _two_models(models: Path) -> None:
    build_model_tar(models / "a.tar.gz", files={"weights.txt": "alpha"})
    build_model_tar(models / "group/b/model-3.tar.gz", files={"weights.txt": "beta"})


def test_answers_per_target_with_hit_and_miss_headers(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(_two_models)
    first = mme.invoke("a.tar.gz", {"x": 1})
    assert first.status == 200, first.body
    assert first.json()["greeting"] == "alpha" and first.json()["echo"] == {"x": 1}
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-moorage-model-cache"] == "miss"
    assert first.headers["x-moorage-loaded-models"] == "1"
    spent = timings(first)
    assert set(spent) == {"wait", "download", "load", "unload", "unloads"}
    assert spent["load"] > 0 and spent["wait"] >= spent["load"] and spent["unloads"] == 0

    again = mme.invoke("a.tar.gz", {"x": 2})
    assert again.status == 200 and again.json()["echo"] == {"x": 2}
    assert again.headers["x-moorage-model-cache"] == "hit"
    assert "x-moorage-model-timings" not in again.headers
    assert again.json()["pid"] == first.json()["pid"]  # the same process: not loaded again

    nested = mme.invoke("group/b/model-3.tar.gz")
    assert nested.status == 200 and nested.json()["greeting"] == "beta"
    assert nested.headers["x-moorage-loaded-models"] == "2"

    listed = mme.call("GET", "/models").json()["models"]
    assert listed == [
        {"modelName": "a.tar.gz", "modelUrl": f"file://{mme.models}/a.tar.gz"},
        {"modelName": "group/b/model-3.tar.gz", "modelUrl": f"file://{mme.models}/group/b/model-3.tar.gz"},
    ]
    assert mme.describe("group/b/model-3.tar.gz")["memoryBytes"] > 0


def test_concurrent_first_requests_load_once(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(lambda models: counting_model(models, "m.tar.gz", "m", sleep=0.5))
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: mme.invoke("m.tar.gz"), range(6)))
    assert [r.status for r in replies] == [200] * 6, [r.body for r in replies]
    assert mme.load_count("m") == 1
    assert len({r.json()["pid"] for r in replies}) == 1
    loaders = [r for r in replies if "download" in timings(r)]
    assert len(loaders) == 1  # the others joined the load under way
    joined = [r for r in replies if r is not loaders[0] and r.headers["x-moorage-model-cache"] == "miss"]
    assert all(set(timings(r)) == {"wait"} for r in joined)


def test_a_failed_load_is_reported_and_tried_again(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(lambda models: counting_model(models, "flaky.tar.gz", "flaky"))
    (mme.loads / "flaky.fail").write_text("weights are not there yet")
    failed = mme.invoke("flaky.tar.gz")
    assert failed.status == 500
    assert failed.headers["x-moorage-error"] == "ModelLoadFailed"
    assert failed.headers["x-moorage-model-cache"] == "miss"
    assert "'flaky.tar.gz'" in failed.text and f"file://{mme.models}/flaky.tar.gz" in failed.text
    assert "model_fn raised RuntimeError: weights are not there yet" in failed.text
    assert mme.loaded() == []

    (mme.loads / "flaky.fail").unlink()
    fixed = mme.invoke("flaky.tar.gz")
    assert fixed.status == 200 and fixed.json()["name"] == "flaky"
    assert mme.load_count("flaky") == 2  # no failure remembered: the next request loaded it again


def test_missing_and_invalid_target_models(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel(_two_models)
    missing = mme.invoke("nope/model.tar.gz")
    assert missing.status == 404 and missing.headers["x-moorage-error"] == "ModelNotFound"
    assert missing.text.startswith(f"Failed to download model data (path: {mme.models}/nope/model.tar.gz).")
    assert "'nope/model.tar.gz'" in missing.text

    for target in ("/a.tar.gz", "group/../a.tar.gz", "..", "a\tb.tar.gz", ""):
        invalid = mme.invoke(target)
        assert invalid.status == 400, (target, invalid.body)
        assert invalid.headers["x-moorage-error"] == "InvalidTargetModel"
        assert invalid.headers["x-moorage-model-cache"] == "miss"
    unnamed = mme.invoke(None)
    assert unnamed.status == 400 and "x-amzn-sagemaker-target-model" in unnamed.text
    assert mme.loaded() == []


def test_a_slow_load_answers_not_ready_then_serves_without_loading_again(
    start_multimodel: StartMultiModel,
) -> None:
    mme = start_multimodel(
        lambda models: counting_model(models, "slow.tar.gz", "slow", sleep=3),
        MOORAGE_MME_READY_WAIT_SECONDS="1",
    )
    early = mme.invoke("slow.tar.gz")
    assert early.status == 429 and early.headers["x-moorage-error"] == "ModelNotReady"
    assert "still loading" in early.text and "Retry" in early.text
    eventually(lambda: mme.loaded() == ["slow.tar.gz"])
    later = mme.invoke("slow.tar.gz")
    assert later.status == 200 and later.headers["x-moorage-model-cache"] == "hit"
    assert mme.load_count("slow") == 1


def test_relays_the_models_own_status_and_content_type(start_multimodel: StartMultiModel) -> None:
    inference = """
import json

def model_fn(model_dir):
    return "m"

def transform_fn(model, body, content_type, accept, context=None):
    data = json.loads(body)
    if data.get("bad"):
        err = ValueError("bad input")
        err.status_code = 422
        raise err
    return json.dumps({"ok": True}), "application/x-ok"
"""
    mme = start_multimodel(lambda models: build_model_tar(models / "t.tar.gz", inference))
    good = mme.invoke("t.tar.gz", {})
    assert good.status == 200 and good.headers["content-type"] == "application/x-ok"
    bad = mme.invoke("t.tar.gz", {"bad": True})
    assert bad.status == 422 and "x-moorage-error" not in bad.headers
    assert json.dumps({"ok": True}).encode() == good.body
