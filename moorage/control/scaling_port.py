"""The scaling engine's view of the fleets (its FleetPort): what a variant is doing, read from the live
fleet, the data plane's running totals and the usage meter, and the one way it changes a variant's
size, UpdateEndpointWeightsAndCapacities' own path (`Endpoints.change_capacity`).

Each method runs on the event loop: the endpoint's row is read on the store's threads (`Store.run`), the
live fleet (the reconciler's, the data plane's counters, the usage meter) on the loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from moorage.api.errors import AwsError
from moorage.control.endpoints import Endpoints, lookup
from moorage.control.reconciler import Reconciler
from moorage.control.scaling.ports import CapacityChangeRefused, VariantInfo, VariantReading
from moorage.dataplane.traffic_sync import FIELDS, TrafficReporter, totals_of
from moorage.fleet.plan import variant_capacity
from moorage.jobs.asynchronous.metrics import BacklogGauges
from moorage.jobs.asynchronous.queue import Backlog
from moorage.metrics.usage import UsageMeter
from moorage.store import Store
from moorage.store.tables import EndpointRow


class FleetScalingPort:
    def __init__(self, store: Store, reconciler: Reconciler, endpoints: Endpoints, usage: UsageMeter) -> None:
        self.store = store
        self.reconciler = reconciler
        self.endpoints = endpoints
        self.usage = usage
        # several servers on one database: the invocations the others carried (their reported totals)
        self.traffic: TrafficReporter | None = None
        # an asynchronous endpoint's queue (moorage/jobs/asynchronous/), when the server runs one
        self.backlog: Callable[[str], Backlog] | None = None

    async def read(self, endpoint: str, variant: str) -> VariantReading | None:
        row = await self._row(endpoint)
        fleet = self.reconciler.fleets.get(row.name) if row is not None else None
        live = fleet.variant(variant) if fleet is not None else None
        spec = _variant(row.deployed if row is not None else None, variant)
        if row is None or live is None or spec is None:
            return None
        assert row.deployed is not None
        desired, _ = variant_capacity(row.deployed, spec)  # an accepted change shows at once
        stats = live.route.stats
        totals = totals_of(stats) if stats is not None else dict.fromkeys(FIELDS, 0.0)
        if self.traffic is not None:
            others = await self.traffic.others(row.name, variant)
            totals = {field: totals[field] + others[field] for field in FIELDS}
        usage = [u for u in (self.usage.of(m.instance_id) for m in live.members) if u is not None]
        backlog = Backlog(0, None)
        if self.backlog is not None and fleet is not None and fleet.route.asynchronous is not None:
            backlog = self.backlog(row.name)
        queued = BacklogGauges.of(backlog, live.current, time.time())
        return VariantReading(
            instances=live.current,
            desired=desired,
            invocations=int(totals["invocations"]),
            invocation_4xx=int(totals["errors_4xx"]),
            invocation_5xx=int(totals["errors_5xx"]),
            model_errors=int(totals["model_errors"]),
            model_latency_us_sum=totals["model_latency_us_sum"],
            overhead_latency_us_sum=totals["overhead_latency_us_sum"],
            latency_count=int(totals["latency_count"]),
            concurrent=sum(m.outstanding for m in live.members),
            cpu_percent=sum(u.cpu_percent for u in usage) / len(usage) if usage else 0.0,
            memory_percent=sum(u.memory_percent for u in usage) / len(usage) if usage else 0.0,
            backlog=queued.size,
            backlog_age_seconds=queued.oldest_age_seconds,
        )

    async def exists(self, endpoint: str, variant: str) -> bool:
        row = await self._row(endpoint)
        return row is not None and _variant(row.deployed or row.pending, variant) is not None

    async def variant_info(self, endpoint: str, variant: str) -> VariantInfo | None:
        row = await self._row(endpoint)
        snapshot = (row.deployed or row.pending) if row is not None else None
        spec = _variant(snapshot, variant)
        if snapshot is None or spec is None:
            return None
        return VariantInfo(
            serverless="ServerlessConfig" in spec, asynchronous="AsyncInferenceConfig" in snapshot["config"]
        )

    async def set_desired_instances(self, endpoint: str, variant: str, count: int) -> None:
        row = await self._row(endpoint)
        if row is None:
            raise CapacityChangeRefused(f"Endpoint {endpoint} no longer exists.")
        try:
            await self.endpoints.change_capacity(row.name, {variant: count}, {})
        except AwsError as err:
            raise CapacityChangeRefused(err.message) from None

    async def _row(self, endpoint: str) -> EndpointRow | None:
        return await self.store.run(_lookup, self.store, endpoint)


def _lookup(store: Store, endpoint: str) -> EndpointRow | None:
    with store.session() as session:
        return lookup(session, endpoint)


def _variant(snapshot: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if not snapshot:
        return None
    config = snapshot["config"]  # a shadow variant scales like a production one
    variants = [*config["ProductionVariants"], *config.get("ShadowProductionVariants", [])]
    return next((v for v in variants if v["VariantName"] == name), None)
