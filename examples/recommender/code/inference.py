"""Inference handlers of a dot-product movie recommender (SageMaker inference-toolkit contract).

The four module-level functions are what a SageMaker model server looks up in ``code/inference.py``:

- ``model_fn(model_dir)``: loads ``user_vectors/*.gz`` and ``movie_vectors/*.gz`` (gzipped CSV,
  header ``id,f0..``) into float32 matrices. Plain numpy, no pandas: one ``np.loadtxt`` per file
  keeps start-up (and so the time to InService) short.
- ``input_fn(body, content_type)``: ``application/json`` only, validated with pydantic into
  ``{"user_id": str, "k": int >= 1 (default 10)}``.
- ``predict_fn(request, model)``: scores every movie with one matrix-vector product and keeps the
  top k (``argpartition``, then a sort of those k only).
- ``output_fn(prediction, accept)``: ``application/json`` only:
  ``{"user_id": ..., "recommendations": [{movie_id: score}, ...]}``, best first.

Errors carry an HTTP ``status_code`` attribute so a server can answer 400/404/406/415 with the
message instead of a bare 500.
"""

import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, Field, ValidationError

JSON = "application/json"


class HandlerError(Exception):
    """An error a client caused; ``status_code`` is the HTTP status to answer with."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HandlerError):
    status_code = 400


class UnknownUser(HandlerError):
    status_code = 404


class NotAcceptable(HandlerError):
    status_code = 406


class UnsupportedMediaType(HandlerError):
    status_code = 415


class RecommendationRequest(BaseModel):
    """The request body."""

    user_id: str
    k: int = Field(default=10, ge=1)


class Prediction(NamedTuple):
    """Top-k movies for one user, best first."""

    user_id: str
    movie_ids: list[str]
    scores: list[float]


def _read_csv_dir(directory: Path) -> tuple[list[str], np.ndarray]:
    """Ids and float32 rows of every ``*.gz`` CSV file in ``directory``, in file-name order."""
    files = sorted(directory.glob("*.gz"))
    if not files:
        raise FileNotFoundError(f"no *.gz vector files in {directory}")
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for f in files:
        text = gzip.decompress(f.read_bytes())
        header, _, body = text.partition(b"\n")
        dim = header.count(b",")
        lines = body.splitlines()
        ids.extend(line[: line.find(b",")].decode() for line in lines if line)
        # loadtxt's C parser is the fastest numpy-only float conversion for CSV text
        vecs = np.loadtxt(
            io.BytesIO(body),
            dtype=np.float32,
            delimiter=",",
            comments=None,
            usecols=range(1, dim + 1),
            ndmin=2,
        )
        blocks.append(vecs)
    vecs = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if len(ids) != len(vecs):
        raise ValueError(f"{directory}: {len(ids)} ids but {len(vecs)} vector rows")
    return ids, np.ascontiguousarray(vecs)


class Recommender:
    """User and movie embeddings; a movie's score for a user is their dot product."""

    def __init__(
        self, user_ids: Sequence[str], user_vecs: np.ndarray, movie_ids: Sequence[str], movie_vecs: np.ndarray
    ) -> None:
        if user_vecs.shape[1] != movie_vecs.shape[1]:
            raise ValueError(f"user dim {user_vecs.shape[1]} != movie dim {movie_vecs.shape[1]}")
        self.user_index = {u: i for i, u in enumerate(user_ids)}
        if len(self.user_index) != len(user_ids):
            raise ValueError("duplicate user ids")
        self.user_vecs = np.ascontiguousarray(user_vecs, dtype=np.float32)
        self.movie_ids = list(movie_ids)
        self.movie_vecs = np.ascontiguousarray(movie_vecs, dtype=np.float32)

    def recommend(self, user_id: str, k: int) -> Prediction:
        row = self.user_index.get(user_id)
        if row is None:
            raise UnknownUser(f"unknown user_id {user_id!r}")
        scores = self.movie_vecs @ self.user_vecs[row]
        n = scores.shape[0]
        k = min(k, n)
        # argpartition is O(n); only the k winners get sorted
        top = np.argpartition(scores, n - k)[n - k :] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        ids = self.movie_ids
        return Prediction(user_id, [ids[i] for i in top.tolist()], scores[top].tolist())


def _media_type(value: str | None) -> str:
    """``'Application/JSON; charset=utf-8'`` -> ``'application/json'``."""
    return (value or "").split(";", 1)[0].strip().lower()


def model_fn(model_dir: str) -> Recommender:
    root = Path(model_dir)
    user_ids, user_vecs = _read_csv_dir(root / "user_vectors")
    movie_ids, movie_vecs = _read_csv_dir(root / "movie_vectors")
    return Recommender(user_ids, user_vecs, movie_ids, movie_vecs)


def input_fn(request_body: str | bytes | bytearray, content_type: str | None) -> RecommendationRequest:
    if _media_type(content_type) != JSON:
        raise UnsupportedMediaType(f"unsupported content type {content_type!r}; send {JSON}")
    try:
        return RecommendationRequest.model_validate_json(request_body)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()
        )
        raise BadRequest(f"invalid request: {problems}") from None


def predict_fn(input_data: RecommendationRequest, model: Recommender) -> Prediction:
    return model.recommend(input_data.user_id, input_data.k)


def _accepts_json(accept: str | None) -> bool:
    """True for a missing Accept, ``*/*``, ``application/*`` or ``application/json`` among the ranges."""
    if not accept or not accept.strip():
        return True  # the toolkit's default when a client sends no Accept
    return any(_media_type(r) in (JSON, "application/*", "*/*") for r in accept.split(","))


def output_fn(prediction: Prediction, accept: str | None) -> str:
    if not _accepts_json(accept):
        raise NotAcceptable(f"unsupported accept type {accept!r}; this model answers {JSON}")
    return json.dumps(
        {
            "user_id": prediction.user_id,
            "recommendations": [{m: s} for m, s in zip(prediction.movie_ids, prediction.scores, strict=True)],
        }
    )
