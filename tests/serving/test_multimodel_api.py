"""SageMaker's multi-model container API on a multi-model instance: load, list, describe, invoke and
unload by name, with MMS's status codes and JSON errors."""

from __future__ import annotations

import json

from tests.serving.multimodel_support import StartMultiModel, counting_model
from tests.support.models import build_model_tar


def test_register_list_describe_invoke_unregister(start_multimodel: StartMultiModel) -> None:
    mme = start_multimodel()
    elsewhere = mme.models.parent / "elsewhere"
    archive = build_model_tar(elsewhere / "model.tar.gz", files={"weights.txt": "gamma"})
    counting_model(elsewhere, "other.tar.gz", "other")

    def register(body: object) -> tuple[int, dict[str, object]]:
        reply = mme.call("POST", "/models", json.dumps(body).encode(), content_type="application/json")
        return reply.status, reply.json()

    assert register({"model_name": "x"}) == (
        400,
        {"code": 400, "type": "BadRequestException", "message": "Parameter url is required."},
    )
    assert register({"url": str(archive)})[1]["message"] == "Parameter model_name is required."
    assert register({"model_name": "g/1", "url": f"file://{archive}"}) == (
        200,
        {"status": 'Model "g/1" registered'},
    )
    status, conflict = register({"model_name": "g/1", "url": str(archive)})
    assert status == 409 and conflict["type"] == "ConflictStatusException"
    assert register({"model_name": "a", "url": str(elsewhere / "other.tar.gz")})[0] == 200
    missing = register({"model_name": "m", "url": str(elsewhere / "missing.tar.gz")})
    assert missing[0] == 404 and missing[1]["type"] == "ModelNotFound"

    first = mme.call("GET", "/models?limit=1").json()
    assert first == {
        "models": [{"modelName": "a", "modelUrl": str(elsewhere / "other.tar.gz")}],
        "nextPageToken": "1",
    }
    second = mme.call("GET", "/models?limit=1&next_page_token=1").json()
    assert second == {"models": [{"modelName": "g/1", "modelUrl": f"file://{archive}"}]}

    described = mme.call("GET", "/models/g%2F1").json()
    assert described[0]["modelName"] == "g/1" and described[0]["memoryBytes"] > 0

    answer = mme.call(
        "POST",
        "/models/g%2F1/invoke",
        b'{"q": 1}',
        content_type="application/json",
        accept="application/json",
    )
    assert answer.status == 200 and answer.json()["greeting"] == "gamma"

    assert mme.call("DELETE", "/models/g%2F1").json() == {"status": 'Model "g/1" unregistered'}
    gone = mme.call("GET", "/models/g%2F1")
    assert gone.status == 404
    assert gone.json() == {"code": 404, "type": "ModelNotFoundException", "message": "Model not found: g/1"}
    assert mme.call("POST", "/models/g%2F1/invoke", b"{}").status == 404
    assert mme.call("DELETE", "/models/g%2F1").status == 404
    assert mme.loaded() == ["a"]
