"""The recommender for batch transform: the real-time handlers, with an ``input_fn`` that also takes
JSON Lines (``application/jsonlines``), one request per line, as SplitType Line with MultiRecord sends.

Packed as ``code/inference.py`` beside the real-time handlers as ``code/recommender.py`` (see
bench/batch.py). A MultiRecord request answers one JSON line per input line, in order, so
AssembleWith Line gives one output line per input line.
"""

import recommender as base  # examples/recommender/code/inference.py, packed beside this file

JSON_LINES = ("application/jsonlines", "application/x-jsonlines", "application/jsonl")

model_fn = base.model_fn


def input_fn(
    request_body: str | bytes | bytearray, content_type: str | None
) -> list[base.RecommendationRequest]:
    if base._media_type(content_type) not in JSON_LINES:
        return [base.input_fn(request_body, content_type)]
    text = request_body.decode() if isinstance(request_body, bytes | bytearray) else request_body
    return [base.input_fn(line, base.JSON) for line in text.splitlines() if line.strip()]


def predict_fn(requests: list[base.RecommendationRequest], model: base.Recommender) -> list[base.Prediction]:
    return [base.predict_fn(request, model) for request in requests]


def output_fn(predictions: list[base.Prediction], accept: str | None) -> tuple[str, str]:
    # each answer is one line of JSON already
    return "\n".join(base.output_fn(prediction, base.JSON) for prediction in predictions), JSON_LINES[0]
