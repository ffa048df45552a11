"""code/requirements.txt becomes a cached uv venv layered over the server's own packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from moorage.artifacts import ArtifactError, prepare_model
from tests.artifacts import tarballs as t

PACKAGE = "tabulate"
PIN = "tabulate==0.9.0"


@pytest.fixture(scope="module")
def package_is_absent() -> None:
    if subprocess.run([sys.executable, "-c", f"import {PACKAGE}"], capture_output=True).returncode == 0:
        pytest.skip(f"{PACKAGE} is installed system-wide; the test needs a package that is not")


def _model(path: Path, requirements: str, extra: bytes = b"") -> Path:
    return t.model_tar(
        path, {"code/requirements.txt": requirements.encode(), "code/inference.py": b"pass\n", "extra": extra}
    )


@pytest.mark.usefixtures("package_is_absent")
def test_requirements_venv_is_built_once_and_shared(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    lines: list[str] = []
    first = prepare_model(
        {"ModelDataUrl": str(_model(tmp_path / "a.tar.gz", f"{PIN}\n"))}, cache, log=lines.append
    )
    assert first.env_dir is not None and first.env_dir.parent == cache / "envs"
    assert first.python == str(first.env_dir / "bin" / "python")
    assert any(line.startswith("uv: ") for line in lines), lines
    probe = "import tabulate, boto3, numpy, moorage.artifacts; print(tabulate.__version__)"
    out = subprocess.run(
        [first.python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert out.stdout.strip() == "0.9.0"
    # Entry points still work after the venv was renamed into the cache.
    table = subprocess.run(
        [str(first.env_dir / "bin" / "tabulate"), "-"], input=b"1 2\n", capture_output=True
    )
    assert table.returncode == 0 and b"1" in table.stdout

    # Another model with the same pins reuses the environment without running uv.
    lines.clear()
    other = prepare_model(
        {"ModelDataUrl": str(_model(tmp_path / "b.tar.gz", f"{PIN}\n", b"different"))},
        cache,
        log=lines.append,
    )
    assert other.model_dir != first.model_dir
    assert other.env_dir == first.env_dir
    assert not any(line.startswith("uv: ") for line in lines), lines
    assert any("is cached at" in line and "nothing to install" in line for line in lines), lines

    # SAGEMAKER_SUBMIT_DIRECTORY naming a local directory is honoured too.
    submit = tmp_path / "src"
    submit.mkdir()
    (submit / "requirements.txt").write_text(f"{PIN}\n")
    plain = t.model_tar(tmp_path / "plain.tar.gz", {"model.bin": b"m"})
    container = {"ModelDataUrl": str(plain), "Environment": {"SAGEMAKER_SUBMIT_DIRECTORY": str(submit)}}
    assert prepare_model(container, cache).env_dir == first.env_dir
    assert prepare_model({"ModelDataUrl": str(plain)}, cache).env_dir is None


def test_failing_requirement_reports_uv_tail(tmp_path: Path) -> None:
    archive = _model(tmp_path / "model.tar.gz", "moorage-no-such-package-xq7z==1.0\n")
    cache = tmp_path / "cache"
    lines: list[str] = []
    with pytest.raises(ArtifactError) as caught:
        prepare_model({"ModelDataUrl": str(archive)}, cache, log=lines.append)
    message = str(caught.value)
    assert message.startswith("Installing code/requirements.txt failed (uv exit ")
    assert "moorage-no-such-package-xq7z" in message
    assert "\n" not in message and len(message) <= 900
    assert any("moorage-no-such-package-xq7z" in line for line in lines)
    assert not any(p for p in (cache / "envs").iterdir()), "no half-built environment may remain"
