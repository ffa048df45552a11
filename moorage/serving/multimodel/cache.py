"""Which models are loaded here: loading on demand (once, however many requests ask at the same time),
and unloading the least recently used idle ones so that what the loaded models measurably use stays
within the memory budget.

Whatever hosts the models is a backend (backend.py): each model a process of its own (processes.py),
or the image's own multi-model server (container.py). A model's cost is what the backend measures (the
PSS of its processes, or its share of the server's), re-measured every few seconds because models grow.
Before a load, idle models are unloaded, least recently used first, until the measured total plus an
estimate of the new model fits (its last measured cost if it was loaded before, else the mean
of the loaded ones); after the load it is measured and, if the total is over, more idle models go. A
model that alone is over the budget is unloaded again and the request told so; for the next
TOO_BIG_RETRY_SECONDS, or until its archive changes (another prepared directory), it is refused before
anything is unloaded for it. A backend that itself says it is full (a multi-model server's 507) gets the
least recently used idle model unloaded and the load asked again, until nothing idle is left to unload.

The memory counted as used is the loaded models', the models still being unloaded, and the estimates of
the loads under way (so concurrent cold loads do not both pass the budget). Every finished unload,
whatever caused it, is reported once, in the next /invocations answer (`take_unloads`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import LocalLocation, Location
from moorage.artifacts.multimodel import ModelDiskCache, PreparedTarget, exists, not_found_message
from moorage.artifacts.prepare import DEFAULT_LIMITS, _Registered
from moorage.serving.multimodel.backend import STOP_GRACE_SECONDS, LoadedModel, ModelBackend, ServerFull
from moorage.serving.multimodel.errors import LOAD_FAILED, NO_MEMORY, NOT_FOUND, NOT_READY, PlatformError
from moorage.serving.multimodel.memory import model_processes
from moorage.serving.multimodel.settings import MultiModelSettings

logger = logging.getLogger("moorage.serving.multimodel")

MEASURE_SECONDS = 2.0
TOO_BIG_RETRY_SECONDS = 600.0  # a model measured over the whole budget is refused this long unasked
UNLOADS_KEPT = 1000  # unload durations not yet reported in an answer (the oldest are dropped past it)


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
    def __init__(
        self,
        settings: MultiModelSettings,
        backend: ModelBackend,
        publish: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        # told the loaded models' processes after each measurement (the instance's usage counts them)
        self.publish = publish
        self.disk = ModelDiskCache(settings.cache_dir, settings.disk_bytes)
        self.loaded: dict[str, LoadedModel] = {}
        self._loads: dict[str, asyncio.Task[LoadedModel]] = {}
        self._waiters: dict[str, int] = {}  # requests waiting for each load
        self._costs: dict[str, int] = {}  # the last measured cost of every model loaded so far
        self._too_big: dict[str, tuple[Path, float]] = {}  # measured over the budget: its dir, when
        self._reserved: dict[str, int] = {}  # loads under way: the cost each was estimated at
        self._leaving: set[LoadedModel] = set()  # out of `loaded`, not stopped yet: still uses memory
        self._retiring: set[LoadedModel] = set()  # timed out: stopped once its other requests end
        self._unloaded: deque[int] = deque(maxlen=UNLOADS_KEPT)  # µs of each unload not yet reported
        self._memory = asyncio.Lock()  # one eviction decision at a time
        self._background: set[asyncio.Task[object]] = set()
        self._measuring: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._measuring = asyncio.ensure_future(self._measure_forever())

    def loading(self, name: str) -> bool:
        return name in self._loads

    def take_unloads(self) -> list[int]:
        """The durations (µs) of the unloads finished since the last call: each is reported once."""
        taken = list(self._unloaded)
        self._unloaded.clear()
        return taken

    async def acquire(
        self, name: str, uri: str, location: Location, wait: float, timings: Timings
    ) -> LoadedModel:
        """The loaded model, with one more request in flight (call `release` after it). Loads it if
        needed; raises PlatformError (ModelNotReady when the load outlasts `wait` seconds)."""
        begun = time.perf_counter()
        deadline = time.monotonic() + wait
        self._waiters[name] = self._waiters.get(name, 0) + 1
        try:
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
        finally:
            left = self._waiters[name] - 1
            if left:
                self._waiters[name] = left
            else:
                del self._waiters[name]

    def release(self, model: LoadedModel, discard: bool = True) -> None:
        """After a request; with ModelCacheSetting Disabled (and `discard`) the model goes once idle, and
        a model that timed out goes once its last request ends. Either leaves `loaded` at once."""
        model.in_flight -= 1
        model.last_used = time.monotonic()
        if model.in_flight:
            return
        if model in self._retiring:
            self._in_background(self._stop(model, 0.0))
        elif discard and not self.settings.caching and self.loaded.get(model.name) is model:
            self._detach(model)
            self._in_background(self._discard(model))

    async def timed_out(self, model: LoadedModel, worker_replaced: bool) -> None:
        """One of `model`'s requests got no answer in time (its connection is closed). A backend that
        replaced just the hung worker keeps the model; otherwise it takes no new request and is stopped
        (it may have hung) once no other request is in flight on it: now, if this was the only one."""
        if worker_replaced or model.unloading:
            return
        self._detach(model)
        if model.in_flight > 1:
            self._retiring.add(model)
            return
        await self._stop(model, 0.0)

    def _begin_load(
        self, name: str, uri: str, location: Location, timings: Timings
    ) -> asyncio.Task[LoadedModel]:
        task = asyncio.ensure_future(self._load(name, uri, location, timings))
        self._loads[name] = task
        task.add_done_callback(lambda _: self._loads.pop(name, None))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved by waiters
        return task

    async def _load(self, name: str, uri: str, location: Location, timings: Timings) -> LoadedModel:
        """_load_checked, with any failure it did not foresee reported as ModelLoadFailed (logged)."""
        try:
            return await self._load_checked(name, uri, location, timings)
        except PlatformError:
            raise
        except Exception as exc:
            logger.exception("loading %s (%s) failed", name, uri)
            raise PlatformError(
                LOAD_FAILED, f"Failed to load model {name!r} ({uri}): {exc!r}. See the endpoint log."
            ) from None

    async def _load_checked(self, name: str, uri: str, location: Location, timings: Timings) -> LoadedModel:
        begun = time.perf_counter()
        target = await asyncio.to_thread(self._prepare, name, uri, location)
        timings.download_us = _since(begun)
        timings.unload_us, timings.unloads = 0, 0
        try:
            self._refuse_known_too_big(name, uri, target)
            try:
                await self._make_room(self._estimate(name), None, timings, reserve=name)
                begun = time.perf_counter()
                model = await self._load_making_room(name, uri, target, timings)
            finally:
                self._reserved.pop(name, None)
            timings.load_us = _since(begun)
        except BaseException:
            target.lease.release()
            raise
        self.loaded[name] = model
        self._in_background(self._watch(model))
        cost = self._costs[name] = model.memory_bytes
        logger.info("loaded %s (%s): %d bytes", name, uri, cost)
        if cost > self.settings.memory_bytes:
            self._too_big[name] = (model.model_dir, time.monotonic())
            await self._unload(model)
            raise PlatformError(
                NO_MEMORY,
                f"Model {name!r} ({uri}) uses {cost} bytes of memory once loaded, more than the "
                f"{self.settings.memory_bytes} bytes this instance has for models. It was unloaded. "
                "Choose an InstanceType with more memory, or make the model smaller.",
            )
        self._too_big.pop(name, None)
        await self._make_room(0, model, timings)
        if not self.settings.caching and not self._waiters.get(name):
            logger.info("unloading %s: its requests gave up waiting for the load", name)
            self._detach(model)
            self._in_background(self._discard(model))
        self._in_background(asyncio.to_thread(self.disk.prune))
        return model

    def _refuse_known_too_big(self, name: str, uri: str, target: PreparedTarget) -> None:
        """A model measured over the whole budget is refused before anything is unloaded for it, until
        TOO_BIG_RETRY_SECONDS have passed or its archive changed (it prepares to another directory)."""
        known = self._too_big.get(name)
        if known is None:
            return
        model_dir, when = known
        if model_dir != target.prepared.model_dir or time.monotonic() - when > TOO_BIG_RETRY_SECONDS:
            del self._too_big[name]
            return
        raise PlatformError(
            NO_MEMORY,
            f"Model {name!r} ({uri}) used {self._costs.get(name, 0)} bytes of memory when it was last "
            f"loaded, more than the {self.settings.memory_bytes} bytes this instance has for models, so it "
            f"was not loaded again (it is tried again after {TOO_BIG_RETRY_SECONDS:g} s, or once its "
            "archive changes). Choose an InstanceType with more memory, or make the model smaller.",
        )

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

    def _least_recently_used(
        self, keep: LoadedModel | None, chosen: Iterable[LoadedModel] = ()
    ) -> LoadedModel | None:
        skip = {id(m) for m in chosen}
        idle = [
            m
            for m in self.loaded.values()
            if m is not keep and id(m) not in skip and m.in_flight == 0 and not m.stopping
        ]
        return min(idle, key=lambda m: m.last_used) if idle else None

    def _prepare(self, name: str, uri: str, location: Location) -> PreparedTarget:
        """Download, unpack and set up the environment (a worker thread)."""
        try:
            if not exists(location):
                raise PlatformError(NOT_FOUND, not_found_message(location, name))
            data = str(location.path) if isinstance(location, LocalLocation) else location.uri
            container: dict[str, object] = {"ModelDataUrl": data}
            image = self.settings.image
            image_uri = image.uri if image is not None else self.settings.image_uri
            if image_uri:  # a registered or framework image decides the model's environment
                container["Image"] = image_uri
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
        """What the models use, those still being unloaded included, plus what the loads under way are
        expected to use."""
        held = sum(m.memory_bytes for m in self.loaded.values()) + sum(m.memory_bytes for m in self._leaving)
        return held + sum(self._reserved.values())

    async def _make_room(
        self, needed: int, keep: LoadedModel | None, timings: Timings | None, reserve: str | None = None
    ) -> None:
        """Unload idle models, least recently used first, until used + needed fits the budget; with
        `reserve`, count `needed` as that load's until it ends. The victims are stopped together."""
        async with self._memory:
            begun = time.perf_counter()
            victims: list[LoadedModel] = []
            excess = self.used() + needed - self.settings.memory_bytes
            while excess > 0:
                victim = self._least_recently_used(keep, victims)
                if victim is None:
                    break
                logger.info("unloading %s (%d bytes) to make room", victim.name, victim.memory_bytes)
                victims.append(victim)
                excess -= victim.memory_bytes
            for victim in victims:
                self._detach(victim)
            if reserve is not None:
                self._reserved[reserve] = needed
            await asyncio.gather(*(self._stop(victim, STOP_GRACE_SECONDS) for victim in victims))
            if timings is not None and victims:
                timings.unload_us = (timings.unload_us or 0) + _since(begun)
                timings.unloads = (timings.unloads or 0) + len(victims)

    async def unload(self, name: str) -> bool:
        """DELETE /models/{name}: False if it is not loaded."""
        model = self.loaded.get(name)
        if model is None:
            return False
        await self._unload(model)
        return True

    async def _unload(self, model: LoadedModel, grace: float = STOP_GRACE_SECONDS) -> None:
        self._detach(model)
        await self._stop(model, grace)

    def _detach(self, model: LoadedModel) -> None:
        """No new request reaches `model` and it no longer counts as loaded; its memory counts until
        it is stopped."""
        if self.loaded.get(model.name) is model:
            del self.loaded[model.name]
        if not model.unloading:
            model.stopping = True
            self._leaving.add(model)

    async def _stop(self, model: LoadedModel, grace: float) -> None:
        """Stop a detached model (once, however many paths ask), report how long that took, and stamp
        its last use on its directory (disk pruning goes by it)."""
        if model.unloading:
            return
        model.unloading = True
        self._retiring.discard(model)
        begun = time.perf_counter()
        try:
            await model.stop(grace)
        finally:
            self._leaving.discard(model)
            self._unloaded.append(_since(begun))
        used_at = time.time() - (time.monotonic() - model.last_used)
        await asyncio.to_thread(self.disk.stamp, model.model_dir, used_at)

    async def _discard(self, model: LoadedModel) -> None:
        """ModelCacheSetting Disabled: unload after the answer, and delete the model from disk."""
        await self._stop(model, STOP_GRACE_SECONDS)
        await asyncio.to_thread(self.disk.remove, model.model_dir)

    async def _watch(self, model: LoadedModel) -> None:
        """A model process that exits on its own is dropped; the next request loads it again."""
        code = await model.wait()
        if not model.stopping:
            logger.warning(
                "model %s exited (status %s); it is loaded again when next invoked", model.name, code
            )
            await self._unload(model, grace=0.0)

    def _publish_processes(self, models: list[LoadedModel]) -> None:
        assert self.publish is not None
        self.publish(model_processes(models))

    async def _measure_forever(self) -> None:
        while True:
            await asyncio.sleep(MEASURE_SECONDS)
            try:
                await asyncio.to_thread(self.backend.measure, list(self.loaded.values()))
                if self.publish is not None:
                    await asyncio.to_thread(self._publish_processes, list(self.loaded.values()))
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
        models = [*self.loaded.values(), *(m for m in self._leaving if not m.unloading)]
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
