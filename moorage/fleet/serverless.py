"""Serverless variants in the fleet: between zero and one instance, started by the first request that
finds none and stopped after an idle period (docs/serverless.md).

Concurrency maps onto one instance per variant on this machine: its worker count covers MaxConcurrency
(up to the CPUs the server may use; requests beyond the workers queue at them), and the data plane
admits at most MaxConcurrency requests at a time (moorage/dataplane/serverless.py). ProvisionedConcurrency
above zero keeps that instance warm: it starts with the endpoint and is never scaled to zero."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from moorage.dataplane.serverless import ServerlessGate
from moorage.serving.memory import VARIABLE as MEMORY_VARIABLE  # the instance's memory cap, MiB
from moorage.serving.settings import available_cpus

if TYPE_CHECKING:  # the fleet imports this module
    from moorage.dataplane.serverless_sync import Demand
    from moorage.fleet.endpoint import EndpointFleet
    from moorage.fleet.variant import VariantFleet

log = logging.getLogger("moorage.fleet")

WORKERS_VARIABLE = "SAGEMAKER_MODEL_SERVER_WORKERS"
_CHECK_MAX_SECONDS = 1.0  # the idle check runs at least this often


def serverless_config(snapshot: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any] | None:
    """The variant's ServerlessConfig as it is now: the config's, with the last ServerlessUpdateConfig
    (UpdateEndpointWeightsAndCapacities) applied; None for a real-time variant."""
    config = variant.get("ServerlessConfig")
    if config is None:
        return None
    update = ((snapshot.get("capacity") or {}).get(variant["VariantName"]) or {}).get("serverless") or {}
    return {**config, **update}


def warm_instances(config: Mapping[str, Any]) -> int:
    """Instances kept running whatever the traffic: one where ProvisionedConcurrency asks for any."""
    return 1 if config.get("ProvisionedConcurrency") else 0


def instance_type(config: Mapping[str, Any]) -> str:
    """What a cluster reserves for the instance (moorage/compute/instance_types.py sizes this name)."""
    return f"serverless-{int(config['MemorySizeInMB'])}MB"


def instance_environment(
    config: Mapping[str, Any], environment: Mapping[str, str], cpus: int | None = None
) -> dict[str, str]:
    """The model's environment plus the memory cap and, unless the model sets it, a worker count that
    covers MaxConcurrency without exceeding the instance's CPUs: `cpus` where its provider reserves a
    number (a Ray actor), else those this server may use."""
    if cpus is None:
        cpus = available_cpus()
    workers = max(1, min(int(config["MaxConcurrency"]), cpus))
    return {WORKERS_VARIABLE: str(workers), **environment, MEMORY_VARIABLE: str(config["MemorySizeInMB"])}


def apply_demand(fleets: Mapping[str, EndpointFleet], demand: Demand) -> None:
    """Hand what the other servers report (moorage/dataplane/serverless_sync.py) to each serverless
    variant of the fleets this server runs."""
    for name, fleet in fleets.items():
        for variant in fleet.variants:
            if variant.serverless is not None:
                variant.serverless.others(*demand.get((name, variant.name), (0, None)))


class ServerlessScaler:
    """Keeps a serverless variant at zero or one instance: up on demand, down when idle."""

    def __init__(self, fleet: VariantFleet, config: Mapping[str, Any]) -> None:
        self.fleet = fleet
        self.config = dict(config)
        self.gate = ServerlessGate(int(config["MaxConcurrency"]), wake=self.wake)
        fleet.route.serverless = self.gate
        fleet.route.gate = self.gate
        # the other servers' requests (several servers on one database): in flight now, latest arrival
        self.remote_admitted = 0
        self.remote_last_used = 0.0
        # a provider with a faster way to start instances gets ready for this one's first cold start
        prewarm = getattr(fleet.ctx.provider, "prewarm", None)
        if prewarm is not None:
            prewarm(fleet.plan.prepared.python)

    def wake(self) -> None:
        """A request found no instance: start one now (the request waits for it)."""
        if not self.fleet.closed and self.fleet.desired < 1:
            self.fleet.ctx.logs.write(
                self.fleet.endpoint,
                f"Variant {self.fleet.name}: a request arrived at zero instances; starting one",
            )
            self.fleet.want(1)

    def configure(self, config: Mapping[str, Any]) -> None:
        """A ServerlessUpdateConfig: the new limit applies to the next request; provisioned concurrency
        starts the instance now (and removing it lets the idle period stop it)."""
        self.config = dict(config)
        self.gate.max_concurrency = int(config["MaxConcurrency"])
        if warm_instances(config) and self.fleet.desired < 1:
            self.fleet.want(1)

    def close(self) -> None:
        """The variant is closing (DeleteEndpoint, UpdateEndpoint): requests held for its cold start go
        to the endpoint's route as it is now, or fail at once if the endpoint is gone."""
        self.gate.close()

    def others(self, admitted: int, last_used: float | None) -> None:
        """What the servers that do not reconcile report of this variant (moorage/dataplane/
        serverless_sync.py): requests they hold or serve now, and when their latest one arrived (epoch
        seconds). One waiting there is a cold start here."""
        self.remote_admitted = admitted
        if last_used is not None:
            self.remote_last_used = max(self.remote_last_used, last_used)
        if admitted:
            self.wake()

    def failed(self, reason: str) -> None:
        """An instance failed to start or died: requests waiting for one get this reason."""
        self.gate.failure = (time.monotonic(), reason)
        self.gate.release()

    def joined(self) -> None:
        """An instance joined the route: requests held for one go to it now."""
        self.gate.release()

    async def run(self) -> None:
        """Scale to zero once no request has arrived for the idle period and none is in flight."""
        idle = self.fleet.ctx.settings.serverless_idle_seconds
        while not self.fleet.closed:
            await self.fleet.ctx.clock.sleep(max(0.01, min(idle / 4, _CHECK_MAX_SECONDS)))
            gate = self.gate
            if (
                self.fleet.desired > 0
                and not warm_instances(self.config)
                and gate.admitted == 0
                and self.remote_admitted == 0
                and time.monotonic() - gate.last_used >= idle
                and time.time() - self.remote_last_used >= idle
            ):
                self.fleet.ctx.logs.write(
                    self.fleet.endpoint,
                    f"Variant {self.fleet.name}: no request for {idle:g} s; scaling to zero instances",
                )
                self.fleet.want(0)
