"""Which models are loaded here: loading on demand (once, however many requests ask at the same time),
and unloading the least recently used idle ones so that what the loaded models measurably use stays
within the memory budget.

A model's cost is the PSS of its processes (memory.py), re-measured every few seconds because models
grow. Before a load, idle models are unloaded, least recently used first, until the measured total
plus an estimate of the new model fits (its last measured cost if it was loaded before, else the mean
of the loaded ones); after the load it is measured and, if the total is over, more idle models go. A
model that alone is over the budget is unloaded again and the request told so.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import LocalLocation, Location
from moorage.artifacts.multimodel import ModelDiskCache, PreparedTarget, exists, not_found_message
from moorage.artifacts.prepare import DEFAULT_LIMITS, _Registered
from moorage.compute.base import InstanceStartError
from moorage.compute.local import LocalProvider
from moorage.serving.multimodel.errors import LOAD_FAILED, NO_MEMORY, NOT_FOUND, NOT_READY, PlatformError
from moorage.serving.multimodel.processes import ModelProcess, start_model
from moorage.serving.multimodel.settings import MultiModelSettings

logger = logging.getLogger("moorage.serving.multimodel")

MEASURE_SECONDS = 2.0
STOP_GRACE_SECONDS = 5.0


@dataclass(slots=True)
class Timings:
    """What one request's miss cost, in microseconds (None: does not apply to this request)."""

    wait_us: int | None = None
    download_us: int | None = None
    load_us: int | None = None
    unload_us: int | None = None
    unloads: int | None = None

    def header(self) -> bytes:
        """The x-moorage-model-timings line; nothing for a request that never got as far as a model."""
        parts = [
            f"{name}={value}"
            for name, value in (
                ("wait", self.wait_us),
                ("download", self.download_us),
                ("load", self.load_us),
                ("unload", self.unload_us),
                ("unloads", self.unloads),
            )
            if value is not None
        ]
        return f"x-moorage-model-timings: {';'.join(parts)}\r\n".encode() if parts else b""


def _since(begun: float) -> int:
    return int((time.perf_counter() - begun) * 1_000_000)


class ModelCache:
    def __init__(self, settings: MultiModelSettings, provider: LocalProvider, log_path: Path) -> None:
        self.settings = settings
        self.provider = provider
        self.disk = ModelDiskCache(settings.cache_dir, settings.disk_bytes)
        self.log_path = log_path
        self.loaded: dict[str, ModelProcess] = {}
        self._loads: dict[str, asyncio.Task[ModelProcess]] = {}
        self._costs: dict[str, int] = {}  # the last measured cost of every model loaded so far
        self._ids = itertools.count(1)
        self._memory = asyncio.Lock()  # one eviction decision at a time
        self._background: set[asyncio.Task[object]] = set()
        self._measuring: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._measuring = asyncio.ensure_future(self._measure_forever())

    def loading(self, name: str) -> bool:
        return name in self._loads

    async def acquire(
        self, name: str, uri: str, location: Location, wait: float, timings: Timings
    ) -> ModelProcess:
        """The loaded model, with one more request in flight (call `release` after it). Loads it if
        needed; raises PlatformError (ModelNotReady when the load outlasts `wait` seconds)."""
        begun = time.perf_counter()
        deadline = time.monotonic() + wait
        while True:
            model = self.loaded.get(name)
            if model is not None and not model.stopping:
                model.in_flight += 1
                return model
            task = self._loads.get(name)
            if task is None:
                task = self._begin_load(name, uri, location, timings)
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise PlatformError(
                    NOT_READY,
                    f"Model {name!r} ({uri}) is still loading. Retry the request in a few seconds; "
                    "it is answered once the model has loaded.",
                ) from None
            finally:
                timings.wait_us = _since(begun)

    def release(self, model: ModelProcess, discard: bool = True) -> None:
        """After a request; with ModelCacheSetting Disabled (and `discard`) the model goes once idle."""
        model.in_flight -= 1
        model.last_used = time.monotonic()
        if discard and not self.settings.caching and model.in_flight == 0:
            self._in_background(self._discard(model))

    def _begin_load(
        self, name: str, uri: str, location: Location, timings: Timings
    ) -> asyncio.Task[ModelProcess]:
        task = asyncio.ensure_future(self._load(name, uri, location, timings))
        self._loads[name] = task
        task.add_done_callback(lambda _: self._loads.pop(name, None))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved by waiters
        return task

    async def _load(self, name: str, uri: str, location: Location, timings: Timings) -> ModelProcess:
        begun = time.perf_counter()
        target = await asyncio.to_thread(self._prepare, name, uri, location)
        timings.download_us = _since(begun)
        timings.unload_us, timings.unloads = 0, 0
        try:
            if target.prepared.command is not None:
                raise PlatformError(
                    LOAD_FAILED,
                    f"Failed to load model {name!r} ({uri}): the container's image runs its own model "
                    "server, which a multi-model instance cannot host. Use an image served by the "
                    "built-in runtime.",
                )
            await self._make_room(self._estimate(name), None, timings)
            begun = time.perf_counter()
            instance_id = f"m{next(self._ids)}"
            try:
                instance = await start_model(
                    self.provider, instance_id, target, self.settings.model_workers, self.log_path
                )
            except InstanceStartError as exc:
                raise PlatformError(LOAD_FAILED, f"Failed to load model {name!r} ({uri}): {exc}") from None
            timings.load_us = _since(begun)
        except BaseException:
            target.lease.release()
            raise
        model = ModelProcess(name, uri, instance, target)
        self.loaded[name] = model
        self._in_background(self._watch(model))
        cost = self._costs[name] = model.measure()
        logger.info("loaded %s (%s): %d bytes", name, uri, cost)
        if cost > self.settings.memory_bytes:
            await self._unload(model)
            raise PlatformError(
                NO_MEMORY,
                f"Model {name!r} ({uri}) uses {cost} bytes of memory once loaded, more than the "
                f"{self.settings.memory_bytes} bytes this instance has for models. It was unloaded. "
                "Choose an InstanceType with more memory, or make the model smaller.",
            )
        await self._make_room(0, model, timings)
        self._in_background(asyncio.to_thread(self.disk.prune))
        return model

    def _prepare(self, name: str, uri: str, location: Location) -> PreparedTarget:
        """Download, unpack and set up the environment (a worker thread)."""
        try:
            if not exists(location):
                raise PlatformError(NOT_FOUND, not_found_message(location, name))
            data = str(location.path) if isinstance(location, LocalLocation) else location.uri
            container: dict[str, object] = {"ModelDataUrl": data}
            image = self.settings.image
            if image is not None:
                container["Image"] = image.uri
            submit = os.environ.get("SAGEMAKER_SUBMIT_DIRECTORY")
            if submit:
                container["Environment"] = {"SAGEMAKER_SUBMIT_DIRECTORY": submit}
            return self.disk.prepare(container, DEFAULT_LIMITS, _log(name), _Registered(image))
        except ArtifactError as exc:
            raise PlatformError(LOAD_FAILED, f"Failed to load model {name!r} ({uri}): {exc}") from None

    def _estimate(self, name: str) -> int:
        known = self._costs.get(name)
        if known is not None:
            return known
        if not self.loaded:
            return 0
        return sum(m.memory_bytes for m in self.loaded.values()) // len(self.loaded)

    def used(self) -> int:
        return sum(m.memory_bytes for m in self.loaded.values())

    async def _make_room(self, needed: int, keep: ModelProcess | None, timings: Timings | None) -> None:
        """Unload idle models, least recently used first, until used + needed fits the budget."""
        async with self._memory:
            begun = time.perf_counter()
            count = 0
            while self.used() + needed > self.settings.memory_bytes:
                idle = [m for m in self.loaded.values() if m is not keep and m.in_flight == 0]
                if not idle:
                    break
                victim = min(idle, key=lambda m: m.last_used)
                logger.info("unloading %s (%d bytes) to make room", victim.name, victim.memory_bytes)
                await self._unload(victim)
                count += 1
            if timings is not None and count:
                timings.unload_us = (timings.unload_us or 0) + _since(begun)
                timings.unloads = (timings.unloads or 0) + count

    async def unload(self, name: str) -> bool:
        """DELETE /models/{name}: False if it is not loaded."""
        model = self.loaded.get(name)
        if model is None:
            return False
        await self._unload(model)
        return True

    async def kill(self, model: ModelProcess) -> None:
        """A model that did not answer in time may be hung: stop it at once; the next request reloads it."""
        await self._unload(model, grace=0.0)

    async def _unload(self, model: ModelProcess, grace: float = STOP_GRACE_SECONDS) -> None:
        if self.loaded.get(model.name) is model:
            del self.loaded[model.name]
        if not model.stopping:
            await model.stop(grace)

    async def _discard(self, model: ModelProcess) -> None:
        """ModelCacheSetting Disabled: unload after the answer, and delete the model from disk."""
        await self._unload(model)
        await asyncio.to_thread(self.disk.remove, model.model_dir)

    async def _watch(self, model: ModelProcess) -> None:
        """A model process that exits on its own is dropped; the next request loads it again."""
        code = await model.instance.wait()
        if not model.stopping:
            logger.warning(
                "model %s exited (status %s); it is loaded again when next invoked", model.name, code
            )
            await self._unload(model, grace=0.0)

    async def _measure_forever(self) -> None:
        while True:
            await asyncio.sleep(MEASURE_SECONDS)
            try:
                for model in list(self.loaded.values()):
                    if not model.stopping:
                        self._costs[model.name] = model.measure()
                if self.used() > self.settings.memory_bytes and self.loaded:
                    newest = max(self.loaded.values(), key=lambda m: m.last_used)
                    await self._make_room(0, newest, None)
            except Exception:
                logger.exception("measuring the loaded models failed; trying again")

    def _in_background(self, work: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def close(self) -> None:
        """SIGTERM: stop loading, stop every model process."""
        if self._measuring is not None:
            self._measuring.cancel()
        loads = list(self._loads.values())
        for load in loads:
            load.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        await asyncio.gather(*(self._unload(m) for m in list(self.loaded.values())), return_exceptions=True)
        for work in list(self._background):
            work.cancel()


def _log(name: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        logger.info("%s: %s", name, line)

    return log


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background work failed: %r", task.exception())
