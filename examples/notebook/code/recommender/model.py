"""Recommendations by cosine similarity: an item's score for a user is the cosine of their vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recommender.schemas import RecommendationResponse, ScoredItem
from recommender.vectors import read_vectors


class UnknownUser(LookupError):
    """The user has no vector; answered as 404."""

    status_code = 404


class Recommender:
    def __init__(
        self, user_ids: list[str], users: np.ndarray, item_ids: list[str], items: np.ndarray
    ) -> None:
        if users.shape[1] != items.shape[1]:
            raise ValueError(f"user vectors have {users.shape[1]} dimensions, item vectors {items.shape[1]}")
        self.user_rows = {user: row for row, user in enumerate(user_ids)}
        self.users = _unit_rows(users)
        self.item_ids = item_ids
        self.items = _unit_rows(items)

    @classmethod
    def load(cls, model_dir: Path) -> Recommender:
        user_ids, users = read_vectors(model_dir / "users.csv.gz")
        item_ids, items = read_vectors(model_dir / "items.csv.gz")
        return cls(user_ids, users, item_ids, items)

    def recommend(self, user_id: str, k: int) -> RecommendationResponse:
        row = self.user_rows.get(user_id)
        if row is None:
            raise UnknownUser(f"unknown user_id {user_id!r}")
        scores = self.items @ self.users[row]
        k = min(k, len(scores))
        best = np.argsort(-scores, kind="stable")[:k]
        return RecommendationResponse(
            user_id=user_id,
            recommendations=[
                ScoredItem(item_id=self.item_ids[i], score=round(float(scores[i]), 4)) for i in best
            ],
        )


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1, so a dot product is a cosine."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
