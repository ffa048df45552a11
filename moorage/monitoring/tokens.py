"""NextTokens of the CloudWatch operations: a position (a small JSON object) in URL-safe base64, opaque
to clients. Clients can send anything back, so `position` reads a token only as far as it is one of
ours; each operation checks its members and answers its own InvalidNextToken otherwise."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

# the largest row id or offset a token may carry (a 64-bit column; more is no position of ours)
MAX_POSITION = 2**63 - 1


def token(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode()


def position(text: str) -> dict[str, Any] | None:
    """The position a token holds; None for text that is no token of ours."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError, binascii.Error, RecursionError):  # UnicodeError is a ValueError
        return None
    return decoded if isinstance(decoded, dict) else None


def whole(value: Any) -> int | None:
    """`value` as a row id or offset: a whole number 0 to MAX_POSITION, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_POSITION:
        return value
    return None


def moment(value: Any) -> float | None:
    """`value` as a time (epoch seconds): a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any double
        return None
    return seconds if math.isfinite(seconds) else None
