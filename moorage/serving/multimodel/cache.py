"""Which models are loaded here: loading on demand (once, however many requests ask at the same time),
and unloading the least recently used idle ones so that what the loaded models measurably use stays
within the memory budget.

Whatever hosts the models is a backend (backend.py): each model a process of its own (processes.py),
or the image's own multi-model server (container.py). A model's cost is what the backend measures (the
PSS of its processes, or its share of the server's), re-measured every few seconds because models grow.
Before a load, idle models are unloaded, least recently used first, until the measured total plus an
estimate of the new model fits (its last measured cost if it was loaded before, else the mean
of the loaded ones); after the load it is measured and, if the total is over, more idle models go. A
model that alone is over the budget is unloaded again and the request told so. A backend that itself
says it is full (a multi-model server's 507) gets the least recently used idle model unloaded and the
load asked again, until nothing idle is left to unload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import LocalLocation, Location
from moorage.artifacts.multimodel import ModelDiskCache, PreparedTarget, exists, not_found_message
from moorage.artifacts.prepare import DEFAULT_LIMITS, _Registered
from moorage.serving.multimodel.backend import STOP_GRACE_SECONDS, LoadedModel, ModelBackend, ServerFull
from moorage.serving.multimodel.errors import LOAD_FAILED, NO_MEMORY, NOT_FOUND, NOT_READY, PlatformError
from moorage.serving.multimodel.settings import MultiModelSettings

logger = logging.getLogger("moorage.serving.multimodel")

MEASURE_SECONDS = 2.0


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
    def __init__(self, settings: MultiModelSettings, backend: ModelBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.disk = ModelDiskCache(settings.cache_dir, settings.disk_bytes)
        self.loaded: dict[str, LoadedModel] = {}
        self._loads: dict[str, asyncio.Task[LoadedModel]] = {}
        self._costs: dict[str, int] = {}  # the last measured cost of every model loaded so far
        self._memory = asyncio.Lock()  # one eviction decision at a time
        self._background: set[asyncio.Task[object]] = set()
        self._measuring: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._measuring = asyncio.ensure_future(self._measure_forever())

    def loading(self, name: str) -> bool:
        return name in self._loads

    async def acquire(
        self, name: str, uri: str, location: Location, wait: float, timings: Timings
    ) -> LoadedModel:
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

    def release(self, model: LoadedModel, discard: bool = True) -> None:
        """After a request; with ModelCacheSetting Disabled (and `discard`) the model goes once idle."""
        model.in_flight -= 1
        model.last_used = time.monotonic()
        if discard and not self.settings.caching and model.in_flight == 0:
            self._in_background(self._discard(model))

    def _begin_load(
        self, name: str, uri: str, location: Location, timings: Timings
    ) -> asyncio.Task[LoadedModel]:
        task = asyncio.ensure_future(self._load(name, uri, location, timings))
        self._loads[name] = task
        task.add_done_callback(lambda _: self._loads.pop(name, None))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved by waiters
        return task

    async def _load(self, name: str, uri: str, location: Location, timings: Timings) -> LoadedModel:
        begun = time.perf_counter()
        target = await asyncio.to_thread(self._prepare, name, uri, location)
        timings.download_us = _since(begun)
        timings.unload_us, timings.unloads = 0, 0
        try:
            await self._make_room(self._estimate(name), None, timings)
            begun = time.perf_counter()
            model = await self._load_making_room(name, uri, target, timings)
            timings.load_us = _since(begun)
        except BaseException:
            target.lease.release()
            raise
        self.loaded[name] = model
        self._in_background(self._watch(model))
        cost = self._costs[name] = model.memory_bytes
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

    async def _load_making_room(
        self, name: str, uri: str, target: PreparedTarget, timings: Timings
    ) -> LoadedModel:
        """The backend's load; while it says it is full, unload the least recently used idle model."""
        while True:
            try:
                return await self.backend.load(name, uri, target)
            except ServerFull as full:
                async with self._memory:
                    begun = time.perf_counter()
                    victim = self._least_recently_used(None)
                    if victim is None:
                        raise PlatformError(
                            NO_MEMORY,
                            f"Model {name!r} ({uri}) does not fit: the model server has no room for it "
                            f"({full}) and every model it holds is answering requests. Retry later, or "
                            "choose an InstanceType with more memory.",
                        ) from None
                    logger.info("unloading %s: the model server is full", victim.name)
                    await self._unload(victim)
                    timings.unload_us = (timings.unload_us or 0) + _since(begun)
                    timings.unloads = (timings.unloads or 0) + 1

    def _least_recently_used(self, keep: LoadedModel | None) -> LoadedModel | None:
        idle = [m for m in self.loaded.values() if m is not keep and m.in_flight == 0 and not m.stopping]
        return min(idle, key=lambda m: m.last_used) if idle else None

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

    async def _make_room(self, needed: int, keep: LoadedModel | None, timings: Timings | None) -> None:
        """Unload idle models, least recently used first, until used + needed fits the budget."""
        async with self._memory:
            begun = time.perf_counter()
            count = 0
            while self.used() + needed > self.settings.memory_bytes:
                victim = self._least_recently_used(keep)
                if victim is None:
                    break
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

    async def kill(self, model: LoadedModel) -> None:
        """A model that did not answer in time may be hung: stop it at once; the next request reloads it."""
        await self._unload(model, grace=0.0)

    async def _unload(self, model: LoadedModel, grace: float = STOP_GRACE_SECONDS) -> None:
        if self.loaded.get(model.name) is model:
            del self.loaded[model.name]
        if not model.stopping:
            await model.stop(grace)

    async def _discard(self, model: LoadedModel) -> None:
        """ModelCacheSetting Disabled: unload after the answer, and delete the model from disk."""
        await self._unload(model)
        await asyncio.to_thread(self.disk.remove, model.model_dir)

    async def _watch(self, model: LoadedModel) -> None:
        """A model process that exits on its own is dropped; the next request loads it again."""
        code = await model.wait()
        if not model.stopping:
            logger.warning(
                "model %s exited (status %s); it is loaded again when next invoked", model.name, code
            )
            await self._unload(model, grace=0.0)

    async def _measure_forever(self) -> None:
        while True:
            await asyncio.sleep(MEASURE_SECONDS)
            try:
                self.backend.measure(list(self.loaded.values()))
                for model in list(self.loaded.values()):
                    if not model.stopping:
                        self._costs[model.name] = model.memory_bytes
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
        """SIGTERM: stop loading, stop every model and what hosts them."""
        if self._measuring is not None:
            self._measuring.cancel()
        loads = list(self._loads.values())
        for load in loads:
            load.cancel()
        await asyncio.gather(*loads, return_exceptions=True)
        models = list(self.loaded.values())
        self.loaded.clear()
        await self.backend.close(models)
        for work in list(self._background):
            work.cancel()


def _log(name: str) -> Callable[[str], None]:
    def log(line: str) -> None:
        logger.info("%s: %s", name, line)

    return log


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background work failed: %r", task.exception())
