"""The shadow tap: copies of production requests go to the shadow variant at its share, off the caller's
path, counted in the shadow's own metrics, bounded in flight, and never change the caller's answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from moorage.api.errors import AwsError
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.invoke import Invocation, InvocationResult, invoke
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.shadow import COPIES_PER_WORKER, ShadowCopies, ShadowTap, live_production_weight
from moorage.dataplane.stats import VariantStats
from moorage.dataplane.taps import TAP_KINDS

from .servers import Handler, TinyServer, answering, hanging

ACCOUNT = "123456789012"
LOG_STREAM = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/sagemaker/Endpoints/ep"


@dataclass
class Endpoint:
    """One production and one shadow variant on tiny worker servers, the shadow tap between them."""

    table: RoutingTable
    route: EndpointRoute
    production: VariantRoute
    shadow: VariantRoute
    copies: ShadowCopies
    servers: dict[str, TinyServer]
    kills: list[str] = field(default_factory=list)

    async def call(self, body: bytes = b'{"x": 1}') -> InvocationResult:
        return await invoke(self.table, Invocation("ep", body), ACCOUNT, perf_counter())

    async def settle(self, timeout: float = 5.0) -> None:
        """Until no copy is in flight."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.copies.in_flight:
            assert asyncio.get_running_loop().time() < deadline, "copies still in flight"
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def endpoint(
    root: Path,
    shadow_handler: Handler,
    *,
    shadow_weight: float = 1.0,
    shadow_workers: int = 1,
    shadow_timeout: float = 5.0,
    seed: int = 7,
) -> AsyncIterator[Endpoint]:
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, TinyServer] = {}
        kills: list[str] = []

        async def worker(name: str, handler: Handler) -> WorkerRoute:
            path = str(root / f"{name}.sock")
            servers[name] = await stack.enter_async_context(TinyServer(path, handler))
            client = WorkerClient(path)
            stack.callback(client.close)
            return WorkerRoute(client, f"i-{name}", 0, kill=lambda: kills.append(name))

        production = VariantRoute("Production", 1.0, 5.0, workers=[await worker("prod", answering(200))])
        production.stats = VariantStats()
        shadow_routes = [await worker(f"shadow{i}", shadow_handler) for i in range(shadow_workers)]
        shadow = VariantRoute("Shadow", shadow_weight, shadow_timeout, workers=shadow_routes)
        shadow.stats = VariantStats()
        copies = ShadowCopies(shadow, seed)
        production.tap = ShadowTap([copies], live_production_weight([production]))
        route = EndpointRoute("ep", [production], LOG_STREAM, shadows=[shadow])
        table = RoutingTable(seed)
        table.install(route)
        yield Endpoint(table, route, production, shadow, copies, servers, kills)


async def test_every_request_is_copied_at_a_full_share(tmp_path: Path) -> None:
    """A shadow weighing as much as production gets every request, counted in its own stats."""
    async with endpoint(tmp_path, answering(200, b"shadow says")) as ep:
        for i in range(5):
            result = await ep.call(b'{"n": %d}' % i)
            assert (result.variant, result.response.body) == ("Production", b'{"n": %d}' % i)
        await ep.settle()
        assert [r.body for r in ep.servers["shadow0"].requests] == [b'{"n": %d}' % i for i in range(5)]
        assert ep.shadow.stats is not None and ep.production.stats is not None
        assert ep.shadow.stats.invocations == 5 and ep.shadow.stats.model_latency.count == 5
        assert ep.production.stats.invocations == 5
        assert (ep.copies.copied, ep.copies.dropped) == (5, 0)


async def test_the_copy_leaves_after_the_callers_request(tmp_path: Path) -> None:
    """invoke() returns with the caller's request sent and the copy not yet: it goes on the next turn of
    the loop."""
    async with endpoint(tmp_path, answering(200)) as ep:
        pending = invoke(ep.table, Invocation("ep", b"{}"), ACCOUNT, perf_counter())
        assert ep.copies.copied == 0
        await asyncio.sleep(0)
        assert ep.copies.copied == 1
        await pending
        await ep.settle()


async def test_a_shadow_gets_its_share(tmp_path: Path) -> None:
    """Weight 0.5 next to production's 1.0: about half of the requests are copied; weight 0: none."""
    async with endpoint(tmp_path, answering(200), shadow_weight=0.5) as ep:
        sent = 400
        for _ in range(sent):
            await ep.call()
        await ep.settle()
        copied = len(ep.servers["shadow0"].requests)
        assert 0.4 * sent < copied < 0.6 * sent
        assert ep.shadow.stats is not None and ep.shadow.stats.invocations == copied

        ep.shadow.weight = 0.0  # UpdateEndpointWeightsAndCapacities changes it in place
        for _ in range(50):
            await ep.call()
        await ep.settle()
        assert len(ep.servers["shadow0"].requests) == copied


async def test_a_failing_shadow_never_changes_the_answer(tmp_path: Path) -> None:
    """A shadow that answers 500 or never answers: the caller gets production's answer every time; the
    shadow's errors and timeouts are counted as its own, and its hung worker is killed like any other."""
    async with endpoint(tmp_path, answering(500, b"shadow broke")) as ep:
        for _ in range(3):
            result = await ep.call(b'{"ok": 1}')
            assert (result.response.status, result.response.body) == (200, b'{"ok": 1}')
        await ep.settle()
        assert ep.shadow.stats is not None
        assert (ep.shadow.stats.invocations, ep.shadow.stats.errors_5xx) == (3, 3)

    async with endpoint(tmp_path, hanging, shadow_timeout=0.2) as ep:
        result = await ep.call(b'{"ok": 2}')
        assert result.response.body == b'{"ok": 2}'
        await ep.settle()
        assert ep.shadow.stats is not None
        assert (ep.shadow.stats.invocations, ep.shadow.stats.model_errors) == (1, 1)
        assert ep.kills == ["shadow0"]


async def test_copies_in_flight_are_bounded(tmp_path: Path) -> None:
    """A shadow that does not answer holds at most COPIES_PER_WORKER copies per worker; the rest are
    dropped and counted, while the caller's requests go on being answered."""
    async with endpoint(tmp_path, hanging, shadow_workers=2, shadow_timeout=30.0) as ep:
        for _ in range(10):
            result = await ep.call()
            assert result.response.status == 200
        await asyncio.sleep(0.05)
        bound = COPIES_PER_WORKER * 2
        assert ep.copies.in_flight == bound
        assert (ep.copies.copied, ep.copies.dropped) == (bound, 10 - bound)

        ep.shadow.workers = []  # every instance gone (being replaced): nothing to send a copy to
        await ep.call()
        await asyncio.sleep(0.01)
        assert ep.copies.dropped == 10 - bound + 1


async def test_the_shadows_own_tap_sees_its_copies(tmp_path: Path) -> None:
    """Data capture on the shadow variant observes each copy, with the copy's own outcome."""
    seen: list[tuple[str, asyncio.Future[InvocationResult]]] = []

    class Recorder:
        kind = "recorder"

        def observe(
            self,
            route: EndpointRoute,
            variant: VariantRoute,
            inv: Invocation,
            future: asyncio.Future[InvocationResult],
            table: RoutingTable,
        ) -> None:
            seen.append((variant.name, future))

        def settings(self) -> dict[str, Any]:
            return {}

    async with endpoint(tmp_path, answering(200, b"from the shadow")) as ep:
        ep.shadow.tap = Recorder()
        await ep.call()
        await ep.settle()
        [(name, copy)] = seen
        assert name == "Shadow"
        assert copy.result().response.body == b"from the shadow"


async def test_another_server_rebuilds_the_tap(tmp_path: Path) -> None:
    """What route_sync publishes rebuilds a tap that finds the shadow by name in the route's shadows and
    copies at the share published with it."""
    async with endpoint(tmp_path, answering(200), shadow_weight=2.0) as ep:
        tap = ep.production.tap
        assert tap is not None and tap.kind == "shadow"
        settings = tap.settings()
        assert settings == {"shadows": ["Shadow"], "production_weight": 1.0}
        rebuilt = TAP_KINDS["shadow"](settings, ep.route)
        assert isinstance(rebuilt, ShadowTap)
        assert [s.route for s in rebuilt.shadows] == [ep.shadow]
        ep.production.tap = rebuilt
        for _ in range(3):  # a share above 1 copies every request
            await ep.call()
        await ep.settle()
        assert len(ep.servers["shadow0"].requests) == 3


async def test_a_shadow_is_never_a_callers_target(tmp_path: Path) -> None:
    """TargetVariant naming the shadow is refused like an unknown variant, before anything (or any copy)
    is sent."""
    async with endpoint(tmp_path, answering(200)) as ep:
        try:
            invoke(ep.table, Invocation("ep", b"{}", target_variant="Shadow"), ACCOUNT, perf_counter())
        except AwsError as err:
            assert "does not exist" in err.message  # a shadow is never a caller's TargetVariant
        else:
            raise AssertionError("TargetVariant naming the shadow was accepted")
        await asyncio.sleep(0.01)
        assert ep.copies.copied == 0
