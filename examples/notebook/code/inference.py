"""SageMaker inference handlers of the notebook's recommender.

``model_fn`` loads the user and item vectors from the model directory; a request is
``{"user_id": "114521", "k": 3}`` (JSON), the answer the k best items with their scores.
Errors carry an HTTP ``status_code``: 400 for a bad request, 404 for an unknown user, 415 for a
content type other than JSON.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from recommender.model import Recommender
from recommender.schemas import RecommendationRequest, RecommendationResponse

JSON = "application/json"


class RequestError(ValueError):
    status_code = 400


class UnsupportedMediaType(ValueError):
    status_code = 415


def model_fn(model_dir: str) -> Recommender:
    return Recommender.load(Path(model_dir))


def input_fn(request_body: str | bytes, content_type: str | None) -> RecommendationRequest:
    if (content_type or "").split(";")[0].strip().lower() != JSON:
        raise UnsupportedMediaType(f"send {JSON}, not {content_type!r}")
    try:
        return RecommendationRequest.model_validate_json(request_body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise RequestError(f"invalid request: {problems}") from None


def predict_fn(request: RecommendationRequest, model: Recommender) -> RecommendationResponse:
    return model.recommend(request.user_id, request.k)


def output_fn(prediction: RecommendationResponse, accept: str | None) -> tuple[str, str]:
    return prediction.model_dump_json(), JSON
