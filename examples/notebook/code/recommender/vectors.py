"""Read the gzipped CSV vector files (header ``id,f0,f1,...``) packed into model.tar.gz."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np


def read_vectors(path: Path) -> tuple[list[str], np.ndarray]:
    """The ids and a float32 matrix with one row per id."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        ids: list[str] = []
        values: list[list[float]] = []
        for row in rows:
            if len(row) != len(header):
                raise ValueError(f"{path.name}: row {len(ids) + 2} has {len(row)} fields, not {len(header)}")
            ids.append(row[0])
            values.append([float(v) for v in row[1:]])
    if not ids:
        raise ValueError(f"{path.name} has no rows")
    return ids, np.asarray(values, dtype=np.float32)
