"""Build the recommender's ``model.tar.gz``: the vector files plus ``code/inference.py``.

The layout is what SageMaker unpacks into ``/opt/ml/model``::

    user_vectors/000.gz
    movie_vectors/000.gz
    code/inference.py

The archive is deterministic (sorted entries, zeroed timestamps and owners, gzip mtime 0): packing the
same data twice gives the same bytes, so an artifact's checksum identifies its content.

Usage: python pack.py [--data DIR] [--out FILE]
       (defaults: build/data-u10000-m5000-d64-s42 and build/model-u10000-m5000-d64-s42.tar.gz)
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE_DIR = HERE / "code"
BUILD_DIR = HERE / "build"
DATA_PARTS = ("user_vectors", "movie_vectors")


def data_name(users: int = 10000, movies: int = 5000, dim: int = 64, seed: int = 42) -> str:
    """A build-dir name that changes whenever the generated data would."""
    return f"u{users}-m{movies}-d{dim}-s{seed}"


def _entries(data_dir: Path, code_dir: Path) -> list[tuple[str, Path]]:
    """(archive name, source file) pairs, sorted; caches and editor files stay out."""
    files: list[tuple[str, Path]] = []
    for part in DATA_PARTS:
        src = data_dir / part
        found = sorted(src.glob("*.gz"))
        if not found:
            raise FileNotFoundError(f"no {part}/*.gz under {data_dir}; run generate_data.py first")
        files += [(f"{part}/{f.name}", f) for f in found]
    for f in sorted(code_dir.rglob("*")):
        rel = f.relative_to(code_dir)
        if f.is_file() and "__pycache__" not in rel.parts and not f.name.endswith((".pyc", "~")):
            files.append((f"code/{rel.as_posix()}", f))
    return sorted(files)


def _tar_dirs(names: list[str]) -> list[str]:
    dirs = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    return sorted(dirs)


def pack(data_dir: str | Path, out: str | Path, code_dir: str | Path = CODE_DIR) -> Path:
    """Write ``out`` (a model.tar.gz) from ``data_dir`` and ``code_dir``; returns its path."""
    entries = _entries(Path(data_dir), Path(code_dir))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in _tar_dirs([name for name, _ in entries]):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, src in entries:
            data = src.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp = out.with_name(out.name + ".tmp")
    # the vector files are gzip already: a higher level would cost time and not shrink them
    with open(tmp, "wb") as raw:
        raw.write(gzip.compress(buf.getvalue(), compresslevel=1, mtime=0))
    tmp.replace(out)
    return out


def build(
    users: int = 10000, movies: int = 5000, dim: int = 64, seed: int = 42, build_dir: str | Path = BUILD_DIR
) -> Path:
    """Generate the data if it is missing, then pack; returns the archive path."""
    sys.path.insert(0, str(HERE))
    try:
        from generate_data import generate
    finally:
        sys.path.remove(str(HERE))
    name = data_name(users, movies, dim, seed)
    data_dir = Path(build_dir) / f"data-{name}"
    if not all((data_dir / part / "000.gz").exists() for part in DATA_PARTS):
        generate(data_dir, users=users, movies=movies, dim=dim, seed=seed)
    return pack(data_dir, Path(build_dir) / f"model-{name}.tar.gz")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=BUILD_DIR / f"data-{data_name()}")
    ap.add_argument("--out", type=Path, default=BUILD_DIR / f"model-{data_name()}.tar.gz")
    a = ap.parse_args(argv)
    out = pack(a.data, a.out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
