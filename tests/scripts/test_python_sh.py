"""scripts/python.sh, which both README commands source to make the project's .venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "python.sh"


def _real(python: str) -> str:
    out = subprocess.run(
        [
            python,
            "-c",
            "import os, sys; print(os.path.realpath(getattr(sys, '_base_executable', sys.executable)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _other_python() -> str | None:
    """A Python >= 3.11 other than the one running the tests, if this machine has one."""
    mine = _real(sys.executable)
    for name in ("python3.14", "python3.13", "python3.12", "python3.11", "python3"):
        for candidate in filter(None, {shutil.which(name), f"/usr/bin/{name}"}):
            if not os.access(candidate, os.X_OK):
                continue
            probe = subprocess.run(
                [candidate, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 11))"]
            )
            if probe.returncode == 0 and _real(candidate) != mine:
                return candidate
    return None


def _ensure_venv(workdir: Path, python: str) -> None:
    subprocess.run(
        ["bash", "-c", f"source {SCRIPT} && ensure_venv"],
        cwd=workdir,
        env={**os.environ, "PYTHON": python},
        check=True,
        capture_output=True,
    )


def test_a_venv_made_by_another_python_is_recreated(tmp_path: Path) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("needs a second Python >= 3.11 on this machine")
    mine = _real(sys.executable)
    subprocess.run([other, "-m", "venv", "--without-pip", ".venv"], cwd=tmp_path, check=True)
    (tmp_path / ".venv" / "marker").write_text("made by the other Python")
    _ensure_venv(tmp_path, sys.executable)
    assert _real(str(tmp_path / ".venv" / "bin" / "python")) == mine
    assert not (tmp_path / ".venv" / "marker").exists()  # recreated, not patched over
    (tmp_path / ".venv" / "marker").write_text("kept")
    _ensure_venv(tmp_path, sys.executable)  # same interpreter: the venv is kept
    assert (tmp_path / ".venv" / "marker").exists()
