"""Review of serverless endpoints, below the HTTP layer: behaviours that are wrong today (each test fails
for the reason in its docstring)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moorage.api.errors import PayloadTooLarge
from moorage.dataplane.invoke import Invocation, invoke
from moorage.dataplane.policy import STRATEGIES
from moorage.dataplane.route_sync import RouteFollower, snapshot_of
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute
from moorage.dataplane.serverless import ServerlessGate


def _leader_route() -> EndpointRoute:
    variant = VariantRoute("AllTraffic", 1.0, 60.0, pick=STRATEGIES["LEAST_OUTSTANDING_REQUESTS"])
    variant.serverless = ServerlessGate(max_concurrency=1)
    return EndpointRoute("sls", [variant], "arn:aws:logs:us-west-2:123456789012:log-group:x")


def _follower_table() -> RoutingTable:
    follower: Any = RouteFollower(store=None, table=RoutingTable(), stats=None)  # type: ignore[arg-type]
    table = RoutingTable()
    table.install(follower._route("sls", snapshot_of(_leader_route())))
    return table


def test_a_follower_server_knows_the_variant_is_serverless() -> None:
    """Several servers (docs/cluster.md): route_sync.snapshot_of publishes no serverless settings and
    RouteFollower._route builds plain VariantRoutes, so on every server but the reconciling one a
    serverless variant is a real-time one: no MaxConcurrency admission, 6 MiB instead of 4 MB, and at
    zero instances no cold start is asked for (ServiceUnavailable after 5 s)."""
    route = _follower_table().get("sls")
    assert route is not None
    assert route.variants[0].serverless is not None


async def test_a_follower_refuses_a_body_over_the_serverless_limit() -> None:
    """The user-visible side of the above: a 5 MB body at a follower is not refused with 413; it waits
    for a worker that no one will start and gets ServiceUnavailable (503) after 5 s."""
    table = _follower_table()
    body = b"0" * (5 * 1024 * 1024)
    future = invoke(table, Invocation("sls", body), "123456789012", 0.0)
    with pytest.raises(PayloadTooLarge):
        await asyncio.wait_for(future, 10)
