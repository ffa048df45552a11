"""application/x-npy: one array in numpy's .npy format; pickled object arrays are refused both ways."""

from __future__ import annotations

import io
from typing import Any


def decode(body: bytes | str) -> Any:
    import numpy as np

    return np.load(io.BytesIO(as_bytes(body)), allow_pickle=False)


def encode(obj: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asanyarray(obj), allow_pickle=False)
    return buffer.getvalue()


def as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body
