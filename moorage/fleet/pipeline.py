"""Multi-container variants: an inference pipeline (Serial) or Direct invocation (docs/pipelines.md).

Every container is prepared as a model of its own (concurrently, each within the variant's download
bound) and started as a process group of its own on each instance (moorage/compute/containers.py); the
data plane's gate (moorage/dataplane/containers.py) chains the hops or picks the one container."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from moorage.artifacts.errors import ArtifactError
from moorage.compute.base import InstanceSpec
from moorage.fleet.plan import (
    ContainerPlan,
    DeploymentFailed,
    VariantPlan,
    invocation_timeout,
    model_containers,
    prepare_container,
    variant_plan,
)
from moorage.fleet.settings import FleetContext

DEFAULT_MODE = "Serial"


def container_hostnames(containers: list[dict[str, Any]]) -> list[str]:
    """Each container's ContainerHostname, or `container-<position>` (1-based) for one without: the
    name its errors, logs and metrics use. A default never repeats a name given to another container."""
    given = {c["ContainerHostname"] for c in containers if c.get("ContainerHostname")}
    names = []
    for position, container in enumerate(containers, start=1):
        name = container.get("ContainerHostname") or f"container-{position}"
        suffix = 1
        while not container.get("ContainerHostname") and (name in given or name in names):
            suffix += 1
            name = f"container-{position}-{suffix}"
        names.append(name)
    return names


def check_runnable(model: dict[str, Any], snapshot: dict[str, Any]) -> None:
    """Refuse what a multi-container variant cannot do here, before anything is downloaded."""
    name = model["ModelName"]
    if any(c.get("Mode") == "MultiModel" for c in model_containers(model)):
        raise DeploymentFailed(
            f"Model {name} has a container with Mode MultiModel among its {len(model_containers(model))} "
            "containers: this server does not run a multi-model container inside an inference pipeline "
            "yet. Serve the multi-model container from a model of its own (PrimaryContainer)."
        )
    if snapshot["config"].get("AsyncInferenceConfig"):
        raise DeploymentFailed(
            f"Model {name} has several containers, and this server does not run an inference pipeline or "
            "Direct invocation behind an asynchronous endpoint yet. Remove AsyncInferenceConfig, or use a "
            "model with one PrimaryContainer."
        )


async def prepare_pipeline(
    endpoint: str, snapshot: dict[str, Any], pv: dict[str, Any], ctx: FleetContext
) -> VariantPlan:
    """Every container prepared (concurrently, within the variant's download bound)."""
    model = snapshot["models"][pv["ModelName"]]
    check_runnable(model, snapshot)
    containers = model_containers(model)
    hostnames = container_hostnames(containers)
    prepared = await _prepare_all(endpoint, pv, model["ModelName"], hostnames, containers, ctx)
    mode = invocation_mode(model)
    first = prepared[0]
    plan = variant_plan(
        snapshot,
        pv,
        ctx,
        first.prepared,
        first.recipe,
        first.environment,
        containers=tuple(prepared),
        invocation=mode,
    )
    # the variant's budget. Serial: one for the whole request, the shortest any container's model
    # server timeout allows. Direct: a request runs in one container, within that container's own timeout
    # (the gate's); the variant's is the longest of them.
    timeouts = [invocation_timeout(c.environment) for c in prepared]
    return dataclasses.replace(plan, timeout=max(timeouts) if mode == "Direct" else min(timeouts))


def invocation_mode(model: dict[str, Any]) -> str:
    """InferenceExecutionConfig's Mode: Serial (the default) or Direct."""
    return str((model.get("InferenceExecutionConfig") or {}).get("Mode") or DEFAULT_MODE)


def container_timeouts(plan: VariantPlan) -> dict[str, float]:
    """Each container's own model server timeout (SAGEMAKER_MODEL_SERVER_TIMEOUT[_SECONDS], at most 60 s),
    by hostname: a Direct request's budget, and how long a pipeline's hop may run before it is hung."""
    return {c.hostname: invocation_timeout(c.environment) for c in plan.containers}


async def _prepare_all(
    endpoint: str,
    pv: dict[str, Any],
    model_name: str,
    hostnames: list[str],
    containers: list[dict[str, Any]],
    ctx: FleetContext,
) -> list[ContainerPlan]:
    """Every container prepared; when some cannot be, the reason names each of them (all preparations
    run to their end first, so none is left running behind the failure)."""
    outcomes = await asyncio.gather(
        *(
            _prepare_one(endpoint, pv, model_name, hostname, container, ctx)
            for hostname, container in zip(hostnames, containers, strict=True)
        ),
        return_exceptions=True,
    )
    failed = [(h, o) for h, o in zip(hostnames, outcomes, strict=True) if isinstance(o, BaseException)]
    for _, outcome in failed:  # a bug or a cancellation is raised as it is, not folded into a reason
        if not isinstance(outcome, DeploymentFailed):
            raise outcome
    if len(failed) == 1:
        raise failed[0][1]
    if failed:
        names = ", ".join(h for h, _ in failed)
        reasons = "; ".join(str(exc) for _, exc in failed)
        raise DeploymentFailed(
            f"{len(failed)} of the {len(containers)} containers of model {model_name} could not be prepared "
            f"({names}). {reasons}"
        )
    return [o for o in outcomes if isinstance(o, ContainerPlan)]


async def _prepare_one(
    endpoint: str,
    pv: dict[str, Any],
    model_name: str,
    hostname: str,
    container: dict[str, Any],
    ctx: FleetContext,
) -> ContainerPlan:
    try:
        prepared, recipe, environment = await prepare_container(endpoint, pv, model_name, container, ctx)
    except (DeploymentFailed, ArtifactError) as exc:
        raise DeploymentFailed(f"Container {hostname} of model {model_name}: {exc}") from exc
    return ContainerPlan(hostname, prepared, recipe, environment)


def with_containers(spec: InstanceSpec, plan: VariantPlan) -> InstanceSpec:
    """An instance's spec with one sub-spec per container: its own model, environment and command, and
    an instance id of its own (a cluster adopts the instance whole, by the instance's deployment)."""
    subs = tuple(
        dataclasses.replace(
            spec,
            instance_id=f"{spec.instance_id}-c{position}",  # short: a socket path has ~100 bytes
            model_dir=c.prepared.model_dir,
            python=c.prepared.python,
            environment=c.environment,
            command=c.prepared.command,
            recipe=c.recipe,
            container=c.hostname,
        )
        for position, c in enumerate(plan.containers, start=1)
    )
    return dataclasses.replace(spec, containers=subs)
