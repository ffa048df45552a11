"""What the model cache (cache.py) needs of whatever actually hosts a loaded model, so that the same
loading, LRU eviction and memory budget work for both hosts:

- processes.py: each model its own single-model instance (the built-in runtime), one process group each;
- container.py: the image's own multi-model server, one for the instance, driven through SageMaker's
  container-side multi-model API (POST /models, POST /models/{name}/invoke, DELETE /models/{name}).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from moorage.artifacts.multimodel import PreparedTarget
from moorage.dataplane.connection import WorkerResponse

STOP_GRACE_SECONDS = 5.0  # an unloaded model's time to finish
TARGET_HEADER = b"x-amzn-sagemaker-target-model"
CUSTOM_ATTRIBUTES = b"x-amzn-sagemaker-custom-attributes"
# what a model is passed of the request (the target model too: a handler may read it)
_PASSED = (b"content-type", b"accept", CUSTOM_ATTRIBUTES, b"x-amzn-sagemaker-inference-id", TARGET_HEADER)


class ServerFull(Exception):
    """The host has no room for one more model (a multi-model server's 507): unload one and retry."""


class InvocationTimeout(TimeoutError):
    """An invocation outlasted its budget. `worker_replaced`: the backend stopped just the worker that
    ran it (and a fresh one takes its place), so the model itself stays loaded."""

    def __init__(self, worker_replaced: bool) -> None:
        super().__init__("the model did not answer in time")
        self.worker_replaced = worker_replaced


class LoadedModel(ABC):
    """A loaded model, whichever backend hosts it. `in_flight` requests keep it from being evicted;
    `last_used` orders the LRU; `memory_bytes` is its measured (or attributed) cost. `stopping`: it takes
    no new requests (being unloaded, or waiting to be); `unloading`: the cache has begun to stop it."""

    def __init__(self, name: str, uri: str, target: PreparedTarget) -> None:
        self.name = name
        self.uri = uri
        self.target = target
        self.memory_bytes = 0
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.stopping = False
        self.unloading = False

    @property
    def model_dir(self) -> Path:
        return self.target.prepared.model_dir

    def pids(self) -> list[int]:
        """The processes that serve it (for the instance's CPU and memory use)."""
        return []

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """What GET /models/{name} adds about where the model runs."""

    @abstractmethod
    async def request(self, headers: Mapping[bytes, bytes], body: bytes, timeout: float) -> WorkerResponse:
        """One invocation; raises TimeoutError (InvocationTimeout where the backend says whether it
        replaced the hung worker), WorkerLost or WorkerUnavailable."""

    @abstractmethod
    async def wait(self) -> int | None:
        """Returns when the model went away on its own (its exit status), or once it was stopped."""

    @abstractmethod
    async def stop(self, grace: float) -> None:
        """Unload it: `grace` seconds to finish (0: at once). Releases its lease on the disk cache."""


class ModelBackend(Protocol):
    async def load(self, name: str, uri: str, target: PreparedTarget) -> LoadedModel:
        """Returns the model loaded and measured (memory_bytes set). Raises PlatformError
        (ModelLoadFailed) when it cannot be loaded, ServerFull when the host wants room first."""
        ...

    def measure(self, models: Sequence[LoadedModel]) -> None:
        """Refresh memory_bytes of the loaded models (they grow)."""
        ...

    async def close(self, models: Sequence[LoadedModel]) -> None:
        """The instance is stopping: stop `models` (those still loaded) and whatever hosts them."""
        ...


def encode_request(path: bytes, headers: Mapping[bytes, bytes], body: bytes) -> bytes:
    """The request as a model's server gets it (as moorage/dataplane/invoke.py encodes one)."""
    parts = [b"POST ", path, b" HTTP/1.1\r\nhost: instance\r\ncontent-length: ", str(len(body)).encode()]
    for name in _PASSED:
        value = headers.get(name)
        if value is not None:
            parts += (b"\r\n", name, b": ", value)
    parts += (b"\r\n\r\n", body)
    return b"".join(parts)
