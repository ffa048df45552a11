"""The benchmark's models: ``count`` archives ``m000.tar.gz`` ... with ``items.npy`` (``rows`` x ``dim``
float32, seeded per model), ``meta.json`` and ``code/inference.py`` (bench/mme_inference.py).

Built once into ``~/.cache/moorage-bench/mme-models/<rows>x<dim>-<handler hash>/`` and reused; the same seed
gives the same bytes, so both servers load identical models.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
HANDLERS = BENCH / "mme_inference.py"
CACHE = Path.home() / ".cache" / "moorage-bench" / "mme-models"


def model_name(i: int) -> str:
    return f"m{i:03d}"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _write(path: Path, name: str, items: np.ndarray, code: bytes) -> None:
    npy = io.BytesIO()
    np.save(npy, items)
    tmp = path.with_suffix(".part")
    # level 1: random floats barely compress, and the archive is written once
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        _add(tar, "items.npy", npy.getvalue())
        _add(tar, "meta.json", json.dumps({"name": name}).encode())
        _add(tar, "code/inference.py", code)
    tmp.rename(path)


def build(count: int, rows: int, dim: int) -> Path:
    """The directory holding the archives (the multi-model prefix); builds what is missing."""
    code = HANDLERS.read_bytes()
    directory = CACHE / f"{rows}x{dim}-{hashlib.sha256(code).hexdigest()[:10]}"
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = directory / f"{model_name(i)}.tar.gz"
        if not path.exists():
            rng = np.random.default_rng(1000 + i)
            items = (rng.standard_normal((rows, dim), dtype=np.float32) / np.sqrt(dim)).astype(np.float32)
            _write(path, model_name(i), items, code)
    return directory
