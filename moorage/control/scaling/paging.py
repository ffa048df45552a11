"""MaxResults / NextToken for the Describe* operations of Application Auto Scaling.

The token holds the sort key of the last item returned (not an offset), so targets, policies or
activities added or removed between pages neither repeat nor go missing."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from moorage.api.errors import InvalidNextTokenException, ValidationException

T = TypeVar("T")
Key = tuple[str | int, ...]
_BAD_TOKEN = "Invalid NextToken. Pass the NextToken from the previous response unchanged."


def page(
    items: Sequence[T],
    key: Callable[[T], Key],
    params: Mapping[str, Any],
    *,
    default_max: int,
) -> tuple[list[T], str | None]:
    """The page of `items` (sorted ascending by `key`) after the request's NextToken.

    MaxResults above the operation's maximum is capped at it (as AWS does); 0 gives an empty page."""
    limit = params.get("MaxResults", default_max)
    if limit < 0:
        raise ValidationException("MaxResults cannot be less than 0")
    limit = min(limit, default_max)
    after = _decode(params["NextToken"]) if params.get("NextToken") else None
    try:
        selected = [item for item in items if after is None or key(item) > after]
    except TypeError:  # a token whose positions do not compare with this listing's keys
        raise InvalidNextTokenException(_BAD_TOKEN) from None
    chosen = selected[:limit]
    more = len(selected) > limit and limit > 0
    return chosen, _encode(key(chosen[-1])) if more else None


def _encode(position: Key) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": list(position)}).encode()).decode()


def _decode(token: str) -> Key:
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError):
        raise InvalidNextTokenException(_BAD_TOKEN) from None
    if not isinstance(position, list) or not all(
        isinstance(p, str) or (isinstance(p, int) and not isinstance(p, bool)) for p in position
    ):
        raise InvalidNextTokenException(_BAD_TOKEN)
    return tuple(position)
