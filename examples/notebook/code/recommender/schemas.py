"""What the endpoint accepts and answers, validated with pydantic."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RecommendationRequest(BaseModel):
    """``{"user_id": "114521", "k": 3}``"""

    user_id: str = Field(min_length=1)
    k: int = Field(default=10, ge=1, le=100)


class ScoredItem(BaseModel):
    item_id: str
    score: float


class RecommendationResponse(BaseModel):
    """The k best items for the user, best first."""

    user_id: str
    recommendations: list[ScoredItem]
