"""text/csv, exactly as the toolkit does it (numpy's type inference, one value per line for 1-D arrays)."""

from __future__ import annotations

import io
from typing import Any


def decode(body: bytes | str) -> Any:
    import numpy as np

    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return np.genfromtxt(io.StringIO(text), dtype=None, delimiter=",")


def encode(obj: Any) -> bytes:
    import numpy as np

    buffer = io.StringIO()
    np.savetxt(buffer, obj, delimiter=",", fmt="%s")
    return buffer.getvalue().encode("utf-8")
