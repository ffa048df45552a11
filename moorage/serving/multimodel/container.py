"""The image's own multi-model server as the backend (MOORAGE_MME_COMMAND): one server for the instance,
driven the way SageMaker drives a multi-model container (its container-side API, as MMS speaks it).

The instance still resolves, downloads and unpacks each TargetModel into the disk cache; then it asks
the server to load the unpacked directory, `POST /models {"model_name", "url": <dir>}` (409: it already
has it, which is as good), invokes `POST /models/{model_name}/invoke` and unloads `DELETE
/models/{model_name}`. The model_name is opaque to the server: a short hash of the TargetModel. A 507
from the load means the server wants room: the cache unloads its least recently used idle model and
asks again (cache.py).

Memory: the server is one process tree, so only its total is measurable, as the PSS summed over its
process group (an MMS frontend and its per-model worker processes). Each model is attributed the growth
measured across its own load (loads are made one at a time so the growth is its own); afterwards the
server's measured total, less what it held with no model loaded, is shared out in proportion to those
growths, so the budget sees what the server really uses. An approximation: memory a model frees or
takes later, or that stays behind after an unload, is spread over whichever models are loaded then.

A request that times out has its connection closed; the server runs every model, so a model cannot be
partly replaced: it takes no new request and is DELETEd once its other requests end (cache.py), and a
new load of it waits for that DELETE (the name is the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from moorage.artifacts.multimodel import PreparedTarget
from moorage.compute.base import InstanceSpec
from moorage.compute.command import CommandInstance, start_command
from moorage.dataplane.connection import WorkerClient, WorkerLost, WorkerResponse, WorkerUnavailable
from moorage.serving.multimodel.backend import TARGET_HEADER, LoadedModel, ServerFull, encode_request
from moorage.serving.multimodel.errors import LOAD_FAILED, PlatformError
from moorage.serving.multimodel.memory import group_pids, measured_bytes

logger = logging.getLogger("moorage.serving.multimodel")

LOAD_TIMEOUT = 600.0  # one POST /models: the server loads the model before it answers
UNLOAD_TIMEOUT = 60.0
KILL_UNLOAD_TIMEOUT = 5.0  # a model that hung: the server is asked once, briefly
STOP_GRACE_SECONDS = 10.0
_NAME_CHARS = 16


def server_model_name(name: str) -> str:
    """The opaque model_name the server knows a model by (TargetModel paths have slashes and dots)."""
    return "m" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:_NAME_CHARS]


class ModelServer:
    """The running image server and the pooled connections to it."""

    def __init__(self, instance: CommandInstance, command: Sequence[str]) -> None:
        self.instance = instance
        self.command = " ".join(command)
        self.address = instance.workers[0].address
        self.client = WorkerClient(self.address)

    @classmethod
    async def start(
        cls, command: Sequence[str], python: str, model_dir: Path, log_path: Path, timeout: float
    ) -> ModelServer:
        """Returns once the server answers GET /ping; raises InstanceStartError."""
        spec = InstanceSpec(
            instance_id=os.environ.get("MOORAGE_INSTANCE_ID", "mme"),
            endpoint_name="",
            variant_name="",
            model_dir=model_dir,
            python=python,
            environment={},
            log_path=log_path,
            startup_timeout=timeout,
            command=tuple(command),
        )
        return cls(await start_command(spec), command)

    @property
    def running(self) -> bool:
        return self.instance.process.returncode is None

    def pids(self) -> list[int]:
        return group_pids(self.instance.process.pid)

    def measure(self) -> int:
        return measured_bytes(self.pids())

    async def call(self, method: bytes, path: bytes, body: bytes, timeout: float) -> WorkerResponse:
        head = b"%s %s HTTP/1.1\r\nhost: instance\r\ncontent-type: application/json\r\ncontent-length: %d"
        return await self.client.request(head % (method, path, len(body)) + b"\r\n\r\n" + body, timeout)

    async def wait(self) -> int:
        return await self.instance.wait()

    async def stop(self, grace: float) -> None:
        self.client.close()
        await self.instance.stop(grace)


class ContainerModel(LoadedModel):
    """A model loaded into the server under an opaque name."""

    def __init__(self, name: str, uri: str, target: PreparedTarget, server: ModelServer, growth: int) -> None:
        super().__init__(name, uri, target)
        self.server = server
        self.server_name = server_model_name(name)
        self.growth = growth  # what the server grew by across this model's load
        self.memory_bytes = growth
        self._path = b"/models/" + quote(self.server_name).encode()
        self._gone = asyncio.Event()

    @property
    def gone(self) -> bool:
        """Unloaded from the server (or given up on)."""
        return self._gone.is_set()

    def pids(self) -> list[int]:
        return self.server.pids()

    def describe(self) -> dict[str, object]:
        return {
            "workers": [self.server.address],
            "pids": self.server.pids(),
            "serverModelName": self.server_name,
        }

    async def request(self, headers: Mapping[bytes, bytes], body: bytes, timeout: float) -> WorkerResponse:
        if TARGET_HEADER not in headers:  # SageMaker always names the model to the container
            headers = {**headers, TARGET_HEADER: self.name.encode("utf-8", "surrogateescape")}
        raw = encode_request(self._path + b"/invoke", headers, body)
        return await self.server.client.request(raw, timeout)

    async def wait(self) -> int | None:
        """The server's exit is the manager's (manager.py), not one model's: only an unload ends this."""
        await self._gone.wait()
        return None

    async def stop(self, grace: float) -> None:
        self.stopping = True
        try:
            if self.server.running:
                await self._unload(UNLOAD_TIMEOUT if grace > 0 else KILL_UNLOAD_TIMEOUT)
        finally:
            self.target.lease.release()
            self._gone.set()

    async def _unload(self, timeout: float) -> None:
        try:
            answer = await self.server.call(b"DELETE", self._path, b"", timeout)
        except (TimeoutError, WorkerLost, WorkerUnavailable) as exc:
            logger.warning(
                "unloading %s (%s) from the model server failed: %r", self.name, self.server_name, exc
            )
            return
        if answer.status >= 300 and answer.status != 404:  # 404: the server no longer has it anyway
            logger.warning(
                "the model server answered DELETE %s (%s) with %d: %s",
                self._path.decode(),
                self.name,
                answer.status,
                _text(answer),
            )


class ContainerBackend:
    """Loads models into the one image server through its multi-model API."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server
        self.baseline = server.measure()  # what the server holds with no model loaded
        self._loading = asyncio.Lock()  # one load at a time, so each growth is the model's own
        self._loaded: set[ContainerModel] = set()

    async def load(self, name: str, uri: str, target: PreparedTarget) -> LoadedModel:
        opaque = server_model_name(name)
        body = json.dumps({"model_name": opaque, "url": str(target.prepared.model_dir)}).encode()
        for earlier in [m for m in self._loaded if m.server_name == opaque and not m.gone]:
            await earlier.wait()  # one that timed out is DELETEd once its requests end: not over the new one
        async with self._loading:
            self._loaded = {m for m in self._loaded if not m.gone}
            before = self.server.measure()
            if not self._loaded:
                self.baseline = before
            try:
                answer = await self.server.call(b"POST", b"/models", body, LOAD_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(TimeoutError, WorkerLost, WorkerUnavailable):  # it may load it later
                    await self.server.call(
                        b"DELETE", b"/models/" + quote(opaque).encode(), b"", UNLOAD_TIMEOUT
                    )
                raise PlatformError(
                    LOAD_FAILED,
                    f"Failed to load model {name!r} ({uri}): the image's model server "
                    f"`{self.server.command}` did not answer POST /models within {LOAD_TIMEOUT:g} s. "
                    "See the endpoint log.",
                ) from None
            except (WorkerLost, WorkerUnavailable) as exc:
                raise PlatformError(
                    LOAD_FAILED,
                    f"Failed to load model {name!r} ({uri}): the image's model server "
                    f"`{self.server.command}` did not answer POST /models ({exc}). See the endpoint log.",
                ) from None
            if answer.status == 507:
                raise ServerFull(_text(answer))
            if answer.status >= 300 and answer.status != 409:  # 409: it has the model loaded already
                raise PlatformError(
                    LOAD_FAILED,
                    f"Failed to load model {name!r} ({uri}): the image's model server answered POST /models "
                    f"with {answer.status}: {_text(answer)}",
                )
            growth = max(0, self.server.measure() - before)
        model = ContainerModel(name, uri, target, self.server, growth)
        self._loaded.add(model)
        return model

    def measure(self, models: Sequence[LoadedModel]) -> None:
        """Share the server's measured total (less its baseline) out in proportion to the load growths.
        Blocking (reads /proc): the cache calls it from a worker thread."""
        mine = [m for m in models if isinstance(m, ContainerModel) and not m.stopping]
        if not mine or not self.server.running:
            return
        total = max(0, self.server.measure() - self.baseline)
        grown = sum(m.growth for m in mine)
        for model in mine:
            model.memory_bytes = total * model.growth // grown if grown else total // len(mine)

    async def close(self, models: Sequence[LoadedModel]) -> None:
        """Stops the server; the models still loaded go with it (no DELETE each)."""
        await self.server.stop(STOP_GRACE_SECONDS)
        await asyncio.gather(*(m.stop(0.0) for m in models), return_exceptions=True)


def _text(answer: WorkerResponse) -> str:
    text = answer.body.decode("utf-8", "replace").strip()
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else text[:500]
