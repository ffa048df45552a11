"""Filtering, sorting and NextToken pagination shared by every List* operation."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from moorage.api.errors import ValidationException

Summary = dict[str, Any]
# (request member, summary member, keep items strictly before the bound?)
_WINDOWS = (
    ("CreationTimeBefore", "CreationTime", True),
    ("CreationTimeAfter", "CreationTime", False),
    ("LastModifiedTimeBefore", "LastModifiedTime", True),
    ("LastModifiedTimeAfter", "LastModifiedTime", False),
)


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationException(
            "Invalid pagination token. Pass the NextToken from the previous response unchanged."
        ) from exc
    if type(offset) is not int or offset < 0:
        raise ValidationException(
            "Invalid pagination token. Pass the NextToken from the previous response unchanged."
        )
    return offset


def list_page(
    items: Sequence[Summary],
    params: Mapping[str, Any],
    *,
    name_key: str,
    sort_keys: Mapping[str, Callable[[Summary], Any]],
    status_key: str | None = None,
    default_max: int = 10,
) -> tuple[list[Summary], str | None]:
    """Apply NameContains, time windows, StatusEquals, SortBy/SortOrder and MaxResults/NextToken.

    `items` are summaries whose time members hold epoch seconds."""
    selected = list(items)
    if contains := params.get("NameContains"):
        needle = str(contains).lower()
        selected = [s for s in selected if needle in str(s[name_key]).lower()]
    for param, member, before in _WINDOWS:
        if param in params:
            bound = _epoch(params[param])
            selected = [s for s in selected if (s[member] < bound if before else s[member] > bound)]
    if status_key and (status := params.get("StatusEquals")):
        selected = [s for s in selected if s[status_key] == status]
    sort_by = params.get("SortBy", "CreationTime")
    key = sort_keys.get(sort_by, sort_keys["CreationTime"])
    descending = params.get("SortOrder", "Descending") == "Descending"
    selected.sort(key=key, reverse=descending)
    return paginate(selected, params, default_max)


def paginate(
    items: Sequence[Summary], params: Mapping[str, Any], default_max: int
) -> tuple[list[Summary], str | None]:
    """The MaxResults/NextToken page of `items`, in their order, and the token for the next page."""
    offset = _decode_token(params["NextToken"]) if params.get("NextToken") else 0
    limit = int(params.get("MaxResults", default_max))
    page = list(items[offset : offset + limit])
    next_token = _encode_token(offset + limit) if offset + limit < len(items) else None
    return page, next_token
