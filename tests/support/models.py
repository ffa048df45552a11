"""Build small model.tar.gz artifacts for tests (no numpy: they must start fast)."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path

ECHO_INFERENCE = """
import json, os, time

def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.txt")) as f:
        greeting = f.read().strip()
    return {"greeting": greeting, "pid": os.getpid(), "env": os.environ.get("GREETING_SUFFIX", "")}

def input_fn(body, content_type):
    if content_type != "application/json":
        err = ValueError(f"unsupported content type {content_type}")
        err.status_code = 415
        raise err
    return json.loads(body)

def predict_fn(data, model):
    if data.get("crash"):
        raise RuntimeError("boom: " + str(data["crash"]))
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if data.get("exit"):
        os._exit(1)
    return {"greeting": model["greeting"] + model["env"], "echo": data, "pid": os.getpid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def build_model_tar(path: Path, inference: str = ECHO_INFERENCE, files: dict[str, str] | None = None) -> Path:
    """Write a model.tar.gz with code/inference.py and the given extra files."""
    members = {"weights.txt": "hello", "code/inference.py": textwrap.dedent(inference), **(files or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path
