"""A real multi-model instance for tests: `python -m moorage.serving` with MOORAGE_MME_* set, over a
file:// prefix of model.tar.gz files, and HTTP to its one socket (a fresh connection per call, so
threads can call at once)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.serving.support import Instance, Reply, UnixHTTPConnection
from tests.support.models import build_model_tar

# model_fn records each load (one line per load in $MME_LOADS/<name>), can be told to fail or sleep,
# and holds `size` bytes written (so they are resident) as the model
COUNTING_INFERENCE = """
import json, os, time

def model_fn(model_dir):
    name = open(os.path.join(model_dir, "name.txt")).read().strip()
    with open(os.path.join(os.environ["MME_LOADS"], name), "a") as loads:
        loads.write("load\\n")
    behaviour = json.loads(open(os.path.join(model_dir, "behaviour.json")).read())
    fail = os.path.join(os.environ["MME_LOADS"], name + ".fail")
    if os.path.exists(fail):
        raise RuntimeError(open(fail).read())
    time.sleep(behaviour.get("sleep", 0))
    return {"name": name, "blob": b"\\x01" * behaviour.get("size", 0)}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if data.get("exit"):
        os._exit(1)
    return {"name": model["name"], "size": len(model["blob"]), "pid": os.getpid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def counting_model(models: Path, target: str, name: str, size: int = 0, sleep: float = 0) -> Path:
    behaviour = json.dumps({"size": size, "sleep": sleep})
    files = {"name.txt": name, "behaviour.json": behaviour}
    return build_model_tar(models / target, COUNTING_INFERENCE, files)


class MultiModelInstance:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.models = root / "models"
        self.cache = root / "cache"
        self.loads = root / "loads"
        self.models.mkdir(parents=True, exist_ok=True)
        self.loads.mkdir(parents=True, exist_ok=True)
        environment = {
            "MOORAGE_MME_SOURCE": f"file://{self.models}/",
            "MOORAGE_MME_CACHE_DIR": str(self.cache),
            "MOORAGE_MME_MEMORY_BYTES": str(4 * 1024**3),
            "MME_LOADS": str(self.loads),
            **env,
        }
        self.instance = Instance(self.models, env=environment, workers=None)

    def start(self) -> MultiModelInstance:
        self.instance.wait_ready()
        return self

    @property
    def address(self) -> str:
        return str(self.instance.info()["workers"][0]["address"])

    def call(self, method: str, path: str, body: bytes | None = None, **headers: str) -> Reply:
        connection = UnixHTTPConnection(self.address, timeout=60)
        try:
            connection.request(
                method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
            )
            return Reply(connection.getresponse())
        finally:
            connection.close()

    def invoke(self, target: str | None, payload: Any = None) -> Reply:
        headers = {"content_type": "application/json", "accept": "application/json"}
        if target is not None:
            headers["x_amzn_sagemaker_target_model"] = target
        return self.call("POST", "/invocations", json.dumps(payload or {}).encode(), **headers)

    def loaded(self) -> list[str]:
        return [m["modelName"] for m in self.call("GET", "/models").json()["models"]]

    def describe(self, name: str) -> dict[str, Any]:
        reply = self.call("GET", f"/models/{quote(name, safe='')}")
        assert reply.status == 200, reply.body
        return reply.json()[0]  # type: ignore[no-any-return]

    def load_count(self, name: str) -> int:
        path = self.loads / name
        return len(path.read_text().splitlines()) if path.exists() else 0

    def output(self) -> str:
        return self.instance.output()

    def stop(self) -> None:
        self.instance.stop()


def timings(reply: Reply) -> dict[str, int]:
    text = reply.headers.get("x-moorage-model-timings", "")
    return {k: int(v) for k, v in (part.split("=") for part in text.split(";") if part)}


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.05)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie not yet reaped has exited too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


StartMultiModel = Callable[..., MultiModelInstance]


def multimodel_instances(tmp_path: Path) -> Iterator[StartMultiModel]:
    """Body of the `start_multimodel` fixture (tests/serving/conftest.py)."""
    started: list[MultiModelInstance] = []

    def start(build: Callable[[Path], None] | None = None, **env: str) -> MultiModelInstance:
        root = tmp_path / f"mme{len(started)}"
        (root / "models").mkdir(parents=True)
        if build is not None:
            build(root / "models")
        instance = MultiModelInstance(root, env)
        started.append(instance)
        return instance.start()

    yield start
    for instance in started:
        instance.stop()
