"""Routes shared through the database, for several servers (front doors) on one PostgreSQL.

The server that reconciles owns the fleets; `RoutePublisher` writes each endpoint's route (variants,
weights, timeouts, routing strategy, worker addresses) to the `routes` table when it changes. Every
other server runs `RouteFollower`, which installs those routes in its own routing table, with its own
connections to the same workers. So an endpoint is invocable through any server within two sync periods
of its route changing (one to publish, one to follow); docs/cluster.md gives the bound."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import delete, select

import moorage.capture.taps  # registers the capture tap in TAP_KINDS
import moorage.dataplane.shadow  # noqa: F401  (registers the shadow tap in TAP_KINDS)
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.gates import GATE_KINDS, Gate
from moorage.dataplane.periodic import every
from moorage.dataplane.policy import STRATEGIES
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.serverless import ServerlessGate
from moorage.dataplane.stats import StatsBook
from moorage.dataplane.taps import TAP_KINDS, Tap
from moorage.jobs.asynchronous.config import AsyncSettings
from moorage.store import Store
from moorage.store.tables import RouteRow

DEFAULT_SYNC_SECONDS = 0.5
Snapshot = dict[str, Any]
_STRATEGY_NAMES = {pick: name for name, pick in STRATEGIES.items()}


def snapshot_of(route: EndpointRoute, state: dict[str, Any] | None = None) -> Snapshot:
    """The route as JSON; `state` is what the reconciling server says of the endpoint's variants
    (DescribeEndpoint's current counts, statuses and placements), carried along for the others."""
    return {
        "log_stream_arn": route.log_stream_arn,
        "asynchronous": dataclasses.asdict(route.asynchronous) if route.asynchronous is not None else None,
        "state": state or {},
        # each variant's share of the traffic (a deployment's blend of two fleets has its own shares)
        "variants": [
            _variant_snapshot(v, weight) for v, weight in zip(route.variants, route.weights, strict=True)
        ],
        "shadows": [_variant_snapshot(v, v.weight) for v in route.shadows],
    }


def _variant_snapshot(v: VariantRoute, weight: float) -> Snapshot:
    return {
        "name": v.name,
        "weight": weight,
        "timeout": v.timeout,
        "routing": _STRATEGY_NAMES.get(v.pick, "LEAST_OUTSTANDING_REQUESTS"),
        "workers": [[w.instance_id, w.index, w.client.address, w.container] for w in v.workers],
        # a serverless variant's admission limit (moorage/dataplane/serverless.py); None: real time
        "serverless": {"max_concurrency": v.serverless.max_concurrency} if v.serverless is not None else None,
        # a multi-model or multi-container variant's gate, as (kind, settings) (dataplane/gates.py)
        "gate": [v.gate.kind, v.gate.settings()] if v.gate is not None and v.gate.kind else None,
        # shadow copies and data capture, as (kind, settings) (dataplane/taps.py)
        "tap": [v.tap.kind, v.tap.settings()] if v.tap is not None else None,
    }


class RoutePublisher:
    """Run by the server that reconciles: writes what its routing table holds whenever it changes."""

    def __init__(
        self,
        store: Store,
        table: RoutingTable,
        state: Callable[[str], dict[str, Any]],
        sync_seconds: float = DEFAULT_SYNC_SECONDS,
    ) -> None:
        self.store = store
        self.table = table
        self.state = state
        self.sync_seconds = sync_seconds
        self._published: dict[str, Snapshot] | None = None  # None: not read back from the store yet

    async def run(self) -> None:
        await every(self.sync_seconds, self.publish, "publishing routes")

    async def publish(self) -> None:
        if self._published is None:
            self._published = await self.store.run(_read_all, self.store)
        now = {name: snapshot_of(route, self.state(name)) for name, route in self.table.items()}
        changed = {name: s for name, s in now.items() if self._published.get(name) != s}
        gone = [name for name in self._published if name not in now]
        if changed or gone:
            await self.store.run(_write, self.store, changed, gone)
            self._published = now


class RouteFollower:
    """Run by every other server: installs the published routes in its own table."""

    def __init__(
        self,
        store: Store,
        table: RoutingTable,
        stats: StatsBook | None,
        sync_seconds: float = DEFAULT_SYNC_SECONDS,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.table = table
        self.stats = stats
        self.sync_seconds = sync_seconds
        # a request at a serverless variant found no instance here: tell the reconciling server now
        # (moorage/dataplane/serverless_sync.py)
        self.wake = wake
        self._installed: dict[str, tuple[Snapshot, EndpointRoute]] = {}

    async def run(self) -> None:
        await every(self.sync_seconds, self.follow, "following routes")

    async def follow(self) -> None:
        published = await self.store.run(_read_all, self.store)
        for name, snapshot in published.items():
            installed = self._installed.get(name)
            if installed is None or _routing(installed[0]) != _routing(snapshot):
                route = self._route(name, snapshot)
                self.table.install(route)
                self._installed[name] = (snapshot, route)
                if installed is not None:
                    _hand_over(installed[1], route)
            elif installed[0] != snapshot:  # only what the variants report changed: same route
                self._installed[name] = (snapshot, installed[1])
        for name in [n for n in self._installed if n not in published]:
            self._drop(name)

    def state(self, name: str) -> dict[str, Any]:
        """What the reconciling server last published of the endpoint's variants ({} if nothing)."""
        installed = self._installed.get(name)
        return dict(installed[0].get("state") or {}) if installed is not None else {}

    def forget(self) -> None:
        """Stop following (this server now reconciles): routes its own fleets replaced meanwhile stay;
        the rest go, with their connections."""
        for name in list(self._installed):
            self._drop(name)

    def _drop(self, name: str) -> None:
        _, route = self._installed.pop(name)
        if self.table.get(name) is route:
            self.table.remove(name)
        for worker in _workers(route):
            worker.client.close()
        for variant in route.variants:
            if variant.serverless is not None:
                variant.serverless.close()

    def _route(self, name: str, snapshot: Snapshot) -> EndpointRoute:
        """A route to the published workers; connections already open to the same addresses are kept."""
        previous = self._installed.get(name)
        clients = {w.client.address: w.client for w in _workers(previous[1])} if previous is not None else {}
        gates = {v.name: v.serverless for v in previous[1].variants} if previous is not None else {}
        variants = [self._variant(name, v, clients, gates) for v in snapshot["variants"]]
        shadows = [self._variant(name, v, clients, {}) for v in snapshot.get("shadows", [])]
        for client in clients.values():  # workers no longer in the route
            client.close()
        asynchronous = snapshot.get("asynchronous")
        settings = AsyncSettings(**asynchronous) if asynchronous else None
        route = EndpointRoute(
            name, variants, snapshot["log_stream_arn"], asynchronous=settings, shadows=shadows
        )
        for variant, published in zip(
            [*variants, *shadows], [*snapshot["variants"], *shadows_of(snapshot)], strict=True
        ):
            variant.tap = _tap(published.get("tap"), route)
        return route

    def _variant(
        self,
        endpoint: str,
        v: Snapshot,
        clients: dict[str, WorkerClient],
        gates: dict[str, ServerlessGate | None],
    ) -> VariantRoute:
        route = VariantRoute(
            v["name"], float(v["weight"]), float(v["timeout"]), pick=STRATEGIES[v["routing"]]
        )
        route.stats = self.stats.variant(endpoint, v["name"]) if self.stats is not None else None
        workers = []
        for instance_id, index, address, *rest in v["workers"]:
            container = str(rest[0]) if rest else ""
            client = clients.pop(address, None) or WorkerClient(address)
            # a hung worker is the reconciling server's to kill (its health check sees it too);
            # here its connection is dropped, so the next request opens a fresh one
            workers.append(WorkerRoute(client, instance_id, int(index), client.close, container=container))
        route.workers = workers
        route.serverless = self._gate(gates.get(v["name"]), v.get("serverless"))
        route.gate = route.serverless or _gate(v.get("gate"))
        return route

    def _gate(
        self, previous: ServerlessGate | None, settings: dict[str, Any] | None
    ) -> ServerlessGate | None:
        """A serverless variant's gate here: the one it had (its admitted and held requests carry over),
        with the published MaxConcurrency. Its cold starts are asked of the reconciling server."""
        if settings is None:
            return None
        if previous is None:
            previous = ServerlessGate(int(settings["max_concurrency"]), remote=True)
            if self.wake is not None:
                previous.wake = self.wake
        previous.max_concurrency = int(settings["max_concurrency"])
        return previous


def shadows_of(snapshot: Snapshot) -> list[Snapshot]:
    shadows: list[Snapshot] = snapshot.get("shadows", [])
    return shadows


def _tap(published: list[Any] | None, route: EndpointRoute) -> Tap | None:
    """A variant's shadow copies and data capture, rebuilt from what the reconciling server published
    (each tap's module registers its kind in TAP_KINDS as it is imported, as the shadow tap's above)."""
    if not published:
        return None
    kind, settings = published
    build = TAP_KINDS.get(kind)
    return build(settings, route) if build is not None else None


def _gate(published: list[Any] | None) -> Gate | None:
    """A multi-model or multi-container variant's gate, rebuilt from what the reconciling server published."""
    if not published:
        return None
    kind, settings = published
    build = GATE_KINDS.get(kind)
    return build(settings) if build is not None else None


def _hand_over(old: EndpointRoute, new: EndpointRoute) -> None:
    """A rebuilt route is installed: requests held on the old one's serverless gates move to it (a gate
    kept by the new route), or to whatever the endpoint has now (a gate that is gone)."""
    kept = {id(v.serverless) for v in new.variants if v.serverless is not None}
    for variant in old.variants:
        gate = variant.serverless
        if gate is not None:
            if id(gate) in kept:
                gate.release()
            else:
                gate.close()


def _routing(snapshot: Snapshot) -> Snapshot:
    """The part of a snapshot that decides the route (not the variants' reported state)."""
    return {key: value for key, value in snapshot.items() if key != "state"}


def _workers(route: EndpointRoute) -> Iterator[WorkerRoute]:
    for variant in [*route.variants, *route.shadows]:
        yield from variant.workers


def _read_all(store: Store) -> dict[str, Snapshot]:
    with store.session() as session:
        return {row.endpoint_name: row.snapshot for row in session.scalars(select(RouteRow))}


def _write(store: Store, changed: dict[str, Snapshot], gone: list[str]) -> None:
    now = time.time()
    with store.session() as session:
        if gone:
            session.execute(delete(RouteRow).where(RouteRow.endpoint_name.in_(gone)))
        for name, snapshot in changed.items():
            row = session.get(RouteRow, name)
            if row is None:
                session.add(RouteRow(endpoint_name=name, snapshot=snapshot, published_at=now))
            else:
                row.snapshot, row.published_at = snapshot, now
