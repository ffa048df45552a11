"""Models of one multi-model instance with conflicting code/requirements.txt each run in their own
environment (built by uv from a local directory of wheels, no index), beside a model without one."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from tests.serving.multimodel_support import StartMultiModel
from tests.support.models import build_model_tar

INFERENCE = """
import json, sys

def model_fn(model_dir):
    try:
        import mmepkg
    except ImportError:
        return {"version": None, "python": sys.executable}
    return {"version": mmepkg.VERSION, "python": sys.executable}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    return model

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def _wheel(directory: Path, version: str) -> None:
    """A pure-Python wheel of `mmepkg` whose VERSION is `version`."""
    files = {
        "mmepkg/__init__.py": f'VERSION = "{version}"\n',
        f"mmepkg-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: mmepkg\nVersion: {version}\n",
        f"mmepkg-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = f"mmepkg-{version}.dist-info/RECORD"
    lines = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(text.encode())}")
    files[record] = "\n".join([*lines, f"{record},,"]) + "\n"
    with zipfile.ZipFile(directory / f"mmepkg-{version}-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


def test_conflicting_requirements_get_their_own_environments(
    start_multimodel: StartMultiModel, tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "1.0")
    _wheel(wheels, "2.0")

    def build(models: Path) -> None:
        for name, pin in (("v1", "mmepkg==1.0"), ("v2", "mmepkg==2.0")):
            build_model_tar(models / f"{name}.tar.gz", INFERENCE, {"code/requirements.txt": pin + "\n"})
        build_model_tar(models / "plain.tar.gz", INFERENCE)
        build_model_tar(models / "plain2.tar.gz", INFERENCE, {"weights.txt": "another model, same Python"})

    mme = start_multimodel(
        build, UV_FIND_LINKS=str(wheels), UV_NO_INDEX="1", UV_CACHE_DIR=str(tmp_path / "uv-cache")
    )
    answers = {}
    for name in ("v1", "v2", "plain", "plain2", "v1"):
        reply = mme.invoke(f"{name}.tar.gz")
        assert reply.status == 200, reply.body
        answers[name] = reply.json()
    assert answers["v1"]["version"] == "1.0"
    assert answers["v2"]["version"] == "2.0"
    assert answers["plain"]["version"] is None
    pythons = {answer["python"] for answer in answers.values()}
    assert len(pythons) == 3  # each environment its own interpreter
    assert answers["plain2"]["python"] == answers["plain"]["python"]
    assert len(list((mme.cache / "envs").iterdir())) == 2
    # models fork from one pre-started process per interpreter: plain and plain2 share theirs
    zygotes = {name: _parent(mme.describe(f"{name}.tar.gz")["pids"][0]) for name in answers}
    assert all(
        b"moorage.serving.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in zygotes.values()
    )
    assert zygotes["plain"] == zygotes["plain2"]
    assert len({zygotes["v1"], zygotes["v2"], zygotes["plain"]}) == 3


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
