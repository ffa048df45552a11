"""A multi-model variant's gate over real sockets: TargetModel checks, rendezvous placement (one load for
concurrent first requests, spreading, spilling a hot model), the instance's error markers as SageMaker
errors, the model-cache metrics, and a front-door timeout that leaves the instance alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from time import perf_counter

import pytest

from moorage.api.errors import AwsError, ModelError, ModelNotReadyException, ValidationError
from moorage.dataplane import multimodel
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.gates import GATE_KINDS
from moorage.dataplane.invoke import TIMEOUT_MESSAGE, Invocation, InvocationResult, Targets, invoke
from moorage.dataplane.multimodel import MultiModelGate, rank
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import VariantStats

from .servers import Answer, Handler, Request, TinyServer, response

ACCOUNT = "123456789012"
LOG_STREAM = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/sagemaker/Endpoints/mme"


class Instances:
    """Tiny servers standing in for multi-model instances (one worker each), and their routes."""

    def __init__(self, root: Path, stack: contextlib.AsyncExitStack) -> None:
        self.root = root
        self.stack = stack
        self.servers: dict[str, TinyServer] = {}
        self.kills: list[str] = []

    async def add(self, name: str, handler: Handler) -> WorkerRoute:
        path = str(self.root / f"{name}.sock")
        self.servers[f"i-{name}"] = await self.stack.enter_async_context(TinyServer(path, handler))
        client = WorkerClient(path)
        self.stack.callback(client.close)
        return WorkerRoute(client, f"i-{name}", 0, kill=lambda: self.kills.append(name))

    def served(self, target: bytes) -> dict[str, int]:
        """How many requests for `target` each instance got."""
        return {
            instance: sum(1 for r in server.requests if r.header(b"x-amzn-sagemaker-target-model") == target)
            for instance, server in self.servers.items()
        }


@contextlib.asynccontextmanager
async def instances(root: Path) -> AsyncIterator[Instances]:
    async with contextlib.AsyncExitStack() as stack:
        yield Instances(root, stack)


def _table(workers: list[WorkerRoute], gate: MultiModelGate, timeout: float = 60.0) -> RoutingTable:
    variant = VariantRoute("AllTraffic", 1.0, timeout, workers=workers, stats=VariantStats())
    variant.gate = gate
    table = RoutingTable()
    table.install(EndpointRoute("mme", [variant], log_stream_arn=LOG_STREAM))
    return table


def _call(
    table: RoutingTable, target: bytes | None, container: str | None = None
) -> asyncio.Future[InvocationResult]:
    targets = Targets(target, container) if target is not None or container is not None else None
    inv = Invocation("mme", b"{}", content_type=b"application/json", targets=targets)
    return invoke(table, inv, ACCOUNT, perf_counter())


def _hit(request: Request) -> Answer:
    """An instance that has every model loaded: echoes TargetModel."""
    target = request.header(b"x-amzn-sagemaker-target-model") or b""
    return response(200, target, ((b"x-moorage-model-cache", b"hit"), (b"x-moorage-loaded-models", b"1")))


async def _answer(request: Request) -> Answer:
    return _hit(request)


def test_ranking_is_the_same_everywhere_and_spreads_models() -> None:
    ids = [f"i-{n:08x}" for n in range(4)]
    firsts = {rank(f"model-{m}.tar.gz", ids)[0] for m in range(200)}
    assert firsts == set(ids)  # 200 models use every instance
    assert rank("a/b.tar.gz", ids) == rank("a/b.tar.gz", list(reversed(ids)))
    # an instance leaving moves only the models it ranked first for
    moved = [m for m in range(200) if rank(f"model-{m}.tar.gz", ids)[0] != "i-00000003"]
    assert all(rank(f"model-{m}.tar.gz", ids[:3])[0] == rank(f"model-{m}.tar.gz", ids)[0] for m in moved)


def test_a_model_sticks_to_one_instance_and_models_spread(tmp_path: Path) -> None:
    async def scenario() -> Instances:
        async with instances(tmp_path) as fleet:
            workers = [await fleet.add(name, _answer) for name in ("a", "b", "c")]
            table = _table(workers, MultiModelGate(spill_at=2))
            for _ in range(3):
                for m in range(12):
                    result = await _call(table, f"m{m}.tar.gz".encode())
                    assert result.response.body == f"m{m}.tar.gz".encode()
            return fleet

    fleet = asyncio.run(scenario())
    for m in range(12):
        served = fleet.served(f"m{m}.tar.gz".encode())
        assert sorted(served.values()) == [0, 0, 3], served  # every request for a model: one instance
    busy = [i for i, s in fleet.servers.items() if s.requests]
    assert len(busy) >= 2  # twelve models did not all land on one instance


def test_concurrent_first_requests_wait_on_one_instance_then_a_hot_model_spills(tmp_path: Path) -> None:
    async def scenario() -> tuple[Instances, dict[str, int], dict[str, int]]:
        gate_open = asyncio.Event()

        async def slow(request: Request) -> Answer:
            await gate_open.wait()
            return _hit(request)

        async with instances(tmp_path) as fleet:
            workers = [await fleet.add(name, slow) for name in ("a", "b", "c")]
            table = _table(workers, MultiModelGate(spill_at=2))
            # ten first requests at once: all on the model's first-ranked instance (one load there)
            first = [_call(table, b"hot.tar.gz") for _ in range(10)]
            await asyncio.sleep(0.05)
            gate_open.set()
            await asyncio.gather(*first)
            cold = fleet.served(b"hot.tar.gz")
            gate_open.clear()
            # loaded there now: six at once fill two per instance, first-ranked first
            hot = [_call(table, b"hot.tar.gz") for _ in range(6)]
            while sum(len(s.requests) for s in fleet.servers.values()) < 16:
                await asyncio.sleep(0.01)
            gate_open.set()
            await asyncio.gather(*hot)
            after = fleet.served(b"hot.tar.gz")
            return fleet, cold, {i: after[i] - cold[i] for i in after}

    fleet, cold, spilled = asyncio.run(scenario())
    preferred = rank("hot.tar.gz", list(fleet.servers))[0]
    assert cold == {i: (10 if i == preferred else 0) for i in fleet.servers}
    assert spilled == {i: 2 for i in fleet.servers}


@pytest.mark.parametrize(
    ("target", "container", "words"),
    [
        (None, "primary", "TargetContainerHostname does not apply"),
        (b"/abs/model.tar.gz", None, "starts with '/'"),
        (b"a/../../etc/passwd", None, "'..' segment"),
        (b"a\x01b.tar.gz", None, "control characters"),
    ],
)
def test_targets_are_checked_before_anything_is_sent(
    tmp_path: Path, target: bytes | None, container: str | None, words: str
) -> None:
    async def scenario() -> tuple[BaseException | None, int]:
        async with instances(tmp_path) as fleet:
            table = _table([await fleet.add("a", _answer)], MultiModelGate())
            try:
                await _call(table, target, container)
            except AwsError as err:
                return err, len(fleet.servers["i-a"].requests)
            return None, len(fleet.servers["i-a"].requests)

    err, sent = asyncio.run(scenario())
    assert isinstance(err, ValidationError) and words in str(err), err
    assert sent == 0


def test_a_missing_target_model_names_the_header(tmp_path: Path) -> None:
    async def scenario() -> BaseException | None:
        async with instances(tmp_path) as fleet:
            table = _table([await fleet.add("a", _answer)], MultiModelGate())
            inv = Invocation("mme", b"{}")
            try:
                await invoke(table, inv, ACCOUNT, perf_counter())
            except AwsError as err:
                return err
            return None

    err = asyncio.run(scenario())
    assert isinstance(err, ValidationError)
    assert "missing a target model header" in str(err) and "TargetModel" in str(err)


_MARKED = {
    b"notready": (429, b"ModelNotReady", b"Model notready is still loading; retry."),
    b"missing": (
        404,
        b"ModelNotFound",
        b"Failed to download model data (bucket: b, key: models/missing). Check the path.",
    ),
    b"bad": (400, b"InvalidTargetModel", b"TargetModel bad is not a model archive."),
    b"broken": (500, b"ModelLoadFailed", b"RuntimeError: no weights"),
    b"slow": (504, b"ModelTimeout", b"model slow did not answer within 60 s"),
    b"lost": (502, b"ModelLost", b"The process serving model lost exited (signal 9)."),
    b"big": (507, b"InsufficientMemory", b"Model big needs 3 GiB; the instance's budget is 2 GiB."),
    b"own": (418, None, b"the model's own teapot"),
}


async def _marking(request: Request) -> Answer:
    target = request.header(b"x-amzn-sagemaker-target-model") or b""
    status, kind, text = _MARKED[target]
    headers = ((b"x-moorage-error", kind),) if kind is not None else ()
    return response(status, text, headers)


def _failure(tmp_path: Path, target: bytes) -> BaseException:
    async def scenario() -> BaseException:
        async with instances(tmp_path) as fleet:
            table = _table([await fleet.add("a", _marking)], MultiModelGate())
            with pytest.raises(AwsError) as caught:
                await _call(table, target)
            return caught.value

    return asyncio.run(scenario())


def test_marked_failures_become_sagemaker_errors(tmp_path: Path) -> None:
    err = _failure(tmp_path, b"notready")
    assert isinstance(err, ModelNotReadyException) and err.status == 429 and "still loading" in str(err)
    err = _failure(tmp_path, b"missing")
    assert isinstance(err, ValidationError) and str(err).startswith(
        "Failed to download model data (bucket: b"
    )
    err = _failure(tmp_path, b"bad")
    assert isinstance(err, ValidationError) and "not a model archive" in str(err)
    err = _failure(tmp_path, b"broken")
    assert isinstance(err, ModelError) and err.fields["OriginalStatusCode"] == 500
    assert "broken" in str(err) and "no weights" in str(err)
    err = _failure(tmp_path, b"slow")
    assert (
        isinstance(err, ModelError)
        and err.fields["OriginalStatusCode"] == 0
        and err.fields["OriginalMessage"] == TIMEOUT_MESSAGE
    )
    err = _failure(tmp_path, b"lost")
    assert (
        isinstance(err, ModelError)
        and err.fields["OriginalStatusCode"] == 0
        and "exited" in err.fields["OriginalMessage"]
    )
    err = _failure(tmp_path, b"big")
    assert isinstance(err, ModelError) and err.fields["OriginalStatusCode"] == 507 and "budget" in str(err)
    err = _failure(tmp_path, b"own")  # no marker: the model's own answer
    assert isinstance(err, ModelError) and err.fields["OriginalStatusCode"] == 418
    assert err.fields["OriginalMessage"] == "the model's own teapot"


def test_cache_reports_become_metrics(tmp_path: Path) -> None:
    answers = iter(
        [
            ((b"x-moorage-model-cache", b"miss"),
             (b"x-moorage-model-timings", b"wait=3000;download=1000;load=2000"),
             (b"x-moorage-loaded-models", b"1")),
            ((b"x-moorage-model-cache", b"hit"), (b"x-moorage-loaded-models", b"1"),
             (b"x-moorage-model-unloaded", b"250")),
            ((b"x-moorage-model-cache", b"miss"),
             # the timings' unloads are informational: x-moorage-model-unloaded counts each unload once
             (b"x-moorage-model-timings", b"wait=9000;load=4000;unload=600;unloads=2"),
             (b"x-moorage-model-unloaded", b"200,400"),
             (b"x-moorage-loaded-models", b"2")),
            ((b"x-moorage-model-unloaded", b"50"), (b"x-moorage-loaded-models", b"1")),  # not a lookup
        ]
    )  # fmt: skip

    async def reporting(request: Request) -> Answer:
        return response(200, b"ok", next(answers))

    async def scenario() -> VariantStats:
        async with instances(tmp_path) as fleet:
            table = _table([await fleet.add("a", reporting)], MultiModelGate())
            for target in (b"m1", b"m1", b"m2", b"m2"):
                await _call(table, target)
            route = table.get("mme")
            assert route is not None and route.variants[0].stats is not None
            return route.variants[0].stats

    stats = asyncio.run(scenario())
    mm = stats.multi_model
    assert mm is not None
    assert (mm.cache_hits, mm.cache_lookups) == (1, 3)
    assert (mm.waiting.count, mm.waiting.sum) == (2, 12000)
    assert (mm.downloading.count, mm.downloading.sum) == (1, 1000)
    assert (mm.loading.count, mm.loading.sum) == (2, 6000)
    assert (mm.unloading.count, mm.unloading.sum) == (4, 900)
    assert mm.loaded == {"i-a": 1}
    assert stats.invocations == 4 and stats.model_errors == 0


def test_a_front_door_timeout_leaves_the_instance_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(multimodel, "TIMEOUT_SLACK_SECONDS", 0.0)

    async def hanging(request: Request) -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def scenario() -> tuple[BaseException, list[str]]:
        async with instances(tmp_path) as fleet:
            table = _table([await fleet.add("a", hanging)], MultiModelGate(), timeout=0.05)
            with pytest.raises(ModelError) as caught:
                await _call(table, b"m1")
            return caught.value, fleet.kills

    err, kills = asyncio.run(scenario())
    assert isinstance(err, ModelError) and err.fields["OriginalMessage"] == TIMEOUT_MESSAGE
    assert kills == []


def test_other_front_doors_rebuild_the_gate() -> None:
    gate = GATE_KINDS["multimodel"](MultiModelGate(spill_at=6, ready_wait=12.5).settings())
    assert isinstance(gate, MultiModelGate) and gate.spill_at == 6 and gate.kind == "multimodel"
    assert gate.ready_wait == 12.5


def test_the_front_door_allows_the_wait_for_a_load_before_the_invocation_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance lets a request wait for its model's load, then gives the model the whole invocation
    timeout: an answer after more than the invocation timeout, within both, is the model's answer."""
    monkeypatch.setattr(multimodel, "TIMEOUT_SLACK_SECONDS", 0.0)

    async def loading(request: Request) -> Answer:
        await asyncio.sleep(0.3)  # six times the invocation timeout below, well within the wait
        return _hit(request)

    async def scenario() -> tuple[bytes, list[str]]:
        async with instances(tmp_path) as fleet:
            gate = MultiModelGate(ready_wait=30.0)
            table = _table([await fleet.add("a", loading)], gate, timeout=0.05)
            result = await _call(table, b"m1")
            return result.response.body, fleet.kills

    body, kills = asyncio.run(scenario())
    assert body == b"m1" and kills == []


def _latency_of(tmp_path: Path, headers: tuple[tuple[bytes, bytes], ...], status: int = 200) -> VariantStats:
    async def answering(request: Request) -> Answer:
        return response(status, b"ok", headers)

    async def scenario() -> VariantStats:
        async with instances(tmp_path) as fleet:
            table = _table([await fleet.add("a", answering)], MultiModelGate())
            with contextlib.suppress(AwsError):
                await _call(table, b"m1")
            route = table.get("mme")
            assert route is not None and route.variants[0].stats is not None
            return route.variants[0].stats

    return asyncio.run(scenario())


def test_model_latency_leaves_out_the_wait_for_a_load_and_not_ready_answers(tmp_path: Path) -> None:
    # a miss that waited a minute for its load (reported): the answer itself took far less, and
    # ModelLatency is what came after the load (nothing here, so 0); the wait is ModelLoadingWaitTime
    miss = _latency_of(
        tmp_path,
        ((b"x-moorage-model-cache", b"miss"), (b"x-moorage-model-timings", b"wait=60000000;load=59000000")),
    )
    assert (miss.model_latency.count, miss.model_latency.sum) == (1, 0.0)
    assert miss.multi_model is not None and miss.multi_model.waiting.sum == 60_000_000
    hit = _latency_of(tmp_path, ((b"x-moorage-model-cache", b"hit"),))
    assert hit.model_latency.count == 1 and hit.model_latency.sum > 0
    # ModelNotReady: no model answered; an invocation and a 4xx, but no ModelLatency
    not_ready = _latency_of(tmp_path, ((b"x-moorage-error", b"ModelNotReady"),), status=429)
    assert (not_ready.invocations, not_ready.errors_4xx, not_ready.model_errors) == (1, 1, 0)
    assert not_ready.model_latency.count == 0


def test_in_flight_counts_per_model_and_instance_are_let_go(tmp_path: Path) -> None:
    """The gate's per-(model, instance) counts hold only requests under way: none once all answered."""

    async def scenario() -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        gate_open = asyncio.Event()

        async def slow(request: Request) -> Answer:
            await gate_open.wait()
            return _hit(request)

        async with instances(tmp_path) as fleet:
            workers = [await fleet.add(name, slow) for name in ("a", "b")]
            gate = MultiModelGate(spill_at=2)
            table = _table(workers, gate)
            calls = [_call(table, f"m{m % 5}.tar.gz".encode()) for m in range(20)]
            while sum(len(s.requests) for s in fleet.servers.values()) < 20:
                await asyncio.sleep(0.01)
            during = dict(gate.in_flight)
            gate_open.set()
            await asyncio.gather(*calls)
            return during, gate.in_flight

    during, after = asyncio.run(scenario())
    assert sum(during.values()) == 20 and {m for m, _ in during} == {f"m{m}.tar.gz" for m in range(5)}
    assert after == {}
