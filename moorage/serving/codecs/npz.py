"""application/x-npz: a scipy sparse matrix (as `scipy.sparse.save_npz` writes it) or a dict of arrays.

Never unpickles: archives are opened with `allow_pickle=False` (scipy's `load_npz` does the same).
"""

from __future__ import annotations

import io
from typing import Any

from moorage.serving.codecs.npy import as_bytes
from moorage.serving.errors import ServingError

# The members `scipy.sparse.save_npz` always writes.
_SPARSE_MEMBERS = frozenset({"format", "shape", "data"})


def decode(body: bytes | str) -> Any:
    import numpy as np

    data = as_bytes(body)
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        if set(archive.files) >= _SPARSE_MEMBERS:
            return _scipy_sparse().load_npz(io.BytesIO(data))
        return {name: archive[name] for name in archive.files}


def encode(obj: Any) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    if isinstance(obj, dict):
        np.savez(buffer, allow_pickle=False, **{str(k): np.asanyarray(v) for k, v in obj.items()})
    elif type(obj).__module__.startswith("scipy.sparse"):
        _scipy_sparse().save_npz(buffer, obj)
    else:
        np.savez(buffer, np.asanyarray(obj), allow_pickle=False)
    return buffer.getvalue()


def _scipy_sparse() -> Any:
    """Imported only for sparse payloads: scipy is heavy and optional."""
    try:
        import scipy.sparse  # type: ignore[import-untyped]
    except ImportError:
        raise ServingError(
            "This application/x-npz payload is a scipy sparse matrix, and scipy is not installed in the "
            "model's environment. Add scipy to code/requirements.txt."
        ) from None
    return scipy.sparse
