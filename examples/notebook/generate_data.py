"""Write the notebook example's vectors: ``data/users.csv.gz`` and ``data/items.csv.gz``.

Gzipped CSV with the header ``id,f0..f15``: 1,000 users with six-digit ids (``114521`` among them)
and 500 items (``item-0001``...), each a 16-dimensional vector. Users and items are drawn around a
few shared "taste" centres, so a user's best items are ones near the same centre. Only the standard
library is used, with a fixed seed and gzip mtime 0: the same arguments give the same bytes.

Usage: python generate_data.py [OUT_DIR]   (default: data/ beside this file)
"""

from __future__ import annotations

import gzip
import random
import sys
from pathlib import Path

USERS = 1000
ITEMS = 500
DIM = 16
TASTES = 8
SEED = 20240611
KNOWN_USER = 114521  # the user the notebook asks about


def _vector(rng: random.Random, centre: list[float]) -> list[float]:
    return [c + rng.gauss(0.0, 0.35) for c in centre]


def _csv(rows: list[tuple[str, list[float]]]) -> bytes:
    header = "id," + ",".join(f"f{i}" for i in range(DIM))
    lines = [header] + [f"{key}," + ",".join(f"{v:.4f}" for v in vec) for key, vec in rows]
    return ("\n".join(lines) + "\n").encode()


def generate(out_dir: Path, seed: int = SEED) -> tuple[Path, Path]:
    rng = random.Random(seed)
    centres = [[rng.gauss(0.0, 1.0) for _ in range(DIM)] for _ in range(TASTES)]
    user_ids = sorted({KNOWN_USER, *rng.sample(range(100000, 200000), USERS - 1)})
    while len(user_ids) < USERS:  # KNOWN_USER was drawn as well
        user_ids = sorted({*user_ids, rng.randrange(100000, 200000)})
    users = [(str(u), _vector(rng, rng.choice(centres))) for u in user_ids]
    items = [(f"item-{i:04d}", _vector(rng, rng.choice(centres))) for i in range(1, ITEMS + 1)]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / "users.csv.gz", out_dir / "items.csv.gz")
    for path, rows in zip(paths, (users, items), strict=True):
        path.write_bytes(gzip.compress(_csv(rows), compresslevel=9, mtime=0))
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "data"
    for written in generate(target):
        print(f"{written} ({written.stat().st_size} bytes)")
