"""Filtering, sorting and NextToken pagination shared by every List* operation."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from moorage.api.errors import ValidationException

Summary = dict[str, Any]
# (request member, summary member, keep items strictly before the bound?); *After is inclusive
_WINDOWS = (
    ("CreationTimeBefore", "CreationTime", True),
    ("CreationTimeAfter", "CreationTime", False),
    ("LastModifiedTimeBefore", "LastModifiedTime", True),
    ("LastModifiedTimeAfter", "LastModifiedTime", False),
)


_BAD_TOKEN = "Invalid pagination token. Pass the NextToken from the previous response unchanged."


def _millis(value: Any) -> float:
    """Epoch seconds at the millisecond precision that responses carry, so a listed time used as a
    bound selects the item it came from."""
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    return round(seconds, 3)


def _encode_token(content: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(content).encode()).decode()


def _decode_token(token: str, member: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))[member]
    except (ValueError, KeyError, TypeError, RecursionError):  # anything a client can make up
        raise ValidationException(_BAD_TOKEN) from None


def list_page(
    items: Sequence[Summary],
    params: Mapping[str, Any],
    *,
    name_key: str,
    sort_keys: Mapping[str, Callable[[Summary], Any]] | None = None,
    status_key: str | None = None,
    default_max: int = 10,
) -> tuple[list[Summary], str | None]:
    """Apply NameContains, time windows, StatusEquals, SortBy/SortOrder and MaxResults/NextToken.

    `items` are summaries whose time members hold epoch seconds; `sort_keys` defaults to SortBy's
    usual values (standard_sort_keys)."""
    if sort_keys is None:
        sort_keys = standard_sort_keys(name_key, status_key)
    selected = list(items)
    if contains := params.get("NameContains"):
        needle = str(contains).lower()
        selected = [s for s in selected if needle in str(s[name_key]).lower()]
    for param, member, before in _WINDOWS:
        if param in params:
            bound = _millis(params[param])
            selected = [
                s for s in selected if (_millis(s[member]) < bound if before else _millis(s[member]) >= bound)
            ]
    if status_key and (status := params.get("StatusEquals")):
        selected = [s for s in selected if s[status_key] == status]
    sort_by = params.get("SortBy", "CreationTime")
    key = sort_keys.get(sort_by, sort_keys["CreationTime"])
    descending = params.get("SortOrder", "Descending") == "Descending"

    def position(summary: Summary) -> tuple[Any, str]:
        return key(summary), str(summary[name_key])  # names break ties, so the order is total

    selected.sort(key=position, reverse=descending)
    # The token holds the last item's position, not an offset: items created or deleted between
    # pages neither repeat nor go missing from the rest of the listing.
    order = [sort_by, descending]
    if token := params.get("NextToken"):
        content = _decode_token(token, "after")
        if not isinstance(content, list) or len(content) != 3 or content[0] != order:
            raise ValidationException(_BAD_TOKEN + " It belongs to a listing with another sort order.")
        after = (content[1], content[2])
        if isinstance(after[0], float) and not math.isfinite(after[0]):
            raise ValidationException(_BAD_TOKEN)
        try:
            selected = [s for s in selected if (position(s) < after if descending else position(s) > after)]
        except TypeError as exc:
            raise ValidationException(_BAD_TOKEN) from exc
    limit = int(params.get("MaxResults", default_max))
    page = selected[:limit]
    next_token = _encode_token({"after": [order, *position(page[-1])]}) if len(selected) > limit else None
    return page, next_token


def standard_sort_keys(name_key: str, status_key: str | None = None) -> dict[str, Callable[[Summary], Any]]:
    """SortBy's values in the List* operations: Name, CreationTime, and Status where a summary has one."""
    keys: dict[str, Callable[[Summary], Any]] = {
        "Name": lambda s: s[name_key],
        "CreationTime": lambda s: s["CreationTime"],
    }
    if status_key:
        keys["Status"] = lambda s: s[status_key]
    return keys


def paginate(
    items: Sequence[Summary], params: Mapping[str, Any], default_max: int
) -> tuple[list[Summary], str | None]:
    """The MaxResults/NextToken page of `items` in their stored order (tags), by position."""
    offset = _decode_token(params["NextToken"], "offset") if params.get("NextToken") else 0
    if type(offset) is not int or offset < 0:
        raise ValidationException(_BAD_TOKEN)
    limit = int(params.get("MaxResults", default_max))
    page = list(items[offset : offset + limit])
    next_token = _encode_token({"offset": offset + limit}) if offset + limit < len(items) else None
    return page, next_token
