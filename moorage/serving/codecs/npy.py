"""application/x-npy: one array in numpy's .npy format.

Requests are never unpickled (a pickled object array in a request body would run the sender's code
in the model's process). Responses may hold object arrays, pickled as the toolkit's encoder does:
that is the model's own output, and unpickling it is the client's choice."""

from __future__ import annotations

import io
from typing import Any


def decode(body: bytes | str) -> Any:
    import numpy as np

    return np.load(io.BytesIO(as_bytes(body)), allow_pickle=False)


def encode(obj: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asanyarray(obj), allow_pickle=True)
    return buffer.getvalue()


def as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body
