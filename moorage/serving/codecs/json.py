"""application/json: decoded like the toolkit (`np.array(json.loads(body))`), numpy-aware on the way out."""

from __future__ import annotations

import json
from typing import Any


def decode(body: bytes | str) -> Any:
    import numpy as np

    return np.array(json.loads(body))


def encode(obj: Any) -> bytes:
    return json.dumps(obj, default=to_builtin).encode("utf-8")


def to_builtin(obj: Any) -> Any:
    """numpy arrays and scalars (anything with `tolist`) become lists and Python numbers."""
    tolist = getattr(obj, "tolist", None)
    if tolist is None:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
    return tolist()
