"""From an endpoint snapshot to variant plans: refuse what this server cannot run, then prepare each
variant's model (download, unpack, environment) within its download bound.

A snapshot is the endpoint config and models as they were when the deployment was accepted, plus the
variants' current capacity (`"capacity"`, written when weights or instance counts change)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from moorage.artifacts import PreparedModel, UnpackLimits
from moorage.artifacts.prepare import ModelRecipe, prepare_recipe
from moorage.fleet.serverless import instance_environment, serverless_config, warm_instances
from moorage.fleet.serverless import instance_type as serverless_instance_type
from moorage.fleet.settings import FleetContext

if TYPE_CHECKING:  # multimodel builds on this module
    from moorage.fleet.multimodel import MultiModelSettings

INVOCATION_TIMEOUT = 60.0
DEFAULT_STARTUP_TIMEOUT = 600.0
DEFAULT_DOWNLOAD_TIMEOUT = 3600.0
DEFAULT_ROUTING = "LEAST_OUTSTANDING_REQUESTS"
_ROUTING = frozenset({"LEAST_OUTSTANDING_REQUESTS", "RANDOM"})

# Endpoint-config features that change what the endpoint does; running without them would look like
# success while doing something else, so the endpoint fails instead and says what to remove.
_UNSERVED_CONFIG = {
    "ExplainerConfig": "online explainability",
}


class DeploymentFailed(Exception):
    """str() is the endpoint's FailureReason."""


@dataclass(frozen=True)
class ContainerPlan:
    """One container of a multi-container variant (an inference pipeline, or Direct invocation)."""

    hostname: str  # ContainerHostname, or the name SageMaker would give it (container-1 …)
    prepared: PreparedModel
    recipe: ModelRecipe
    environment: dict[str, str]


@dataclass(frozen=True)
class VariantPlan:
    """Everything needed to start instances of one production (or shadow) variant."""

    name: str
    prepared: PreparedModel
    recipe: ModelRecipe  # how it was prepared, for a provider that prepares it again where instances run
    instance_type: str
    download_timeout: float
    deployment: str  # which accepted deployment (snapshot) the instances serve; see InstanceSpec
    environment: dict[str, str]
    startup_timeout: float
    instances: int
    weight: float
    timeout: float
    routing: str
    serverless: dict[str, Any] | None = None  # the ServerlessConfig now in force; None: real time
    # several containers on each instance (moorage/fleet/pipeline.py): `prepared`, `recipe` and
    # `environment` above are the first container's; `invocation` is InferenceExecutionConfig's Mode
    containers: tuple[ContainerPlan, ...] = ()
    invocation: str = ""  # "Serial" or "Direct" when there are containers
    # a multi-model variant's settings (moorage/fleet/multimodel.py); None: one model
    multi_model: MultiModelSettings | None = None


def check_supported(config: dict[str, Any]) -> None:
    """Refuse endpoint configs that ask for a mode this server does not run yet."""
    for member, feature in _UNSERVED_CONFIG.items():
        if config.get(member):
            raise DeploymentFailed(
                f"Endpoint config {config['EndpointConfigName']} sets {member}: {feature} is not supported "
                f"by this server yet. Remove {member} to serve the model in real time."
            )
    for variant in [*config["ProductionVariants"], *(config.get("ShadowProductionVariants") or [])]:
        strategy = (variant.get("RoutingConfig") or {}).get("RoutingStrategy", DEFAULT_ROUTING)
        if strategy not in _ROUTING:
            raise DeploymentFailed(
                f"Variant {variant['VariantName']} asks for RoutingStrategy {strategy}, which this server "
                "does not support yet. Use LEAST_OUTSTANDING_REQUESTS or RANDOM."
            )


def model_containers(model: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's containers: its PrimaryContainer, or its Containers in order."""
    if "PrimaryContainer" in model:
        return [model["PrimaryContainer"]]
    return list(model.get("Containers") or [])


def primary_container(model: dict[str, Any]) -> dict[str, Any]:
    """The one container of a single-model, single-container model (what batch transform runs)."""
    containers = model_containers(model)
    if len(containers) != 1:
        raise DeploymentFailed(
            f"Model {model['ModelName']} has {len(containers)} containers; batch transform with an inference "
            "pipeline is not supported by this server yet. Use a model with one PrimaryContainer."
        )
    container = containers[0]
    if container.get("Mode") == "MultiModel":
        raise DeploymentFailed(
            f"Model {model['ModelName']} uses Mode=MultiModel; batch transform needs a single-model "
            "container. Create a model with one model's ModelDataUrl for the job."
        )
    return container


def invocation_timeout(environment: dict[str, str]) -> float:
    """InvokeEndpoint allows 60 s; the model server timeout may only shorten it (read as seconds)."""
    for key in ("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "SAGEMAKER_MODEL_SERVER_TIMEOUT"):
        value = environment.get(key)
        if value:
            with contextlib.suppress(ValueError):
                return max(0.001, min(INVOCATION_TIMEOUT, float(value)))
    return INVOCATION_TIMEOUT


def deployment_key(snapshot: Mapping[str, Any]) -> str:
    """Which accepted deployment a snapshot is (its instances serve only it): when it was accepted."""
    return f"{float(snapshot.get('accepted_at', 0.0)):.6f}"


def variant_capacity(snapshot: Mapping[str, Any], variant: Mapping[str, Any]) -> tuple[int, float]:
    """(instances, weight) a variant should have now: its last capacity change, else the config's."""
    current = (snapshot.get("capacity") or {}).get(variant["VariantName"], {})
    instances = int(current.get("instances", variant.get("InitialInstanceCount", 1)))
    weight = float(current.get("weight", variant.get("InitialVariantWeight", 1.0)))
    return instances, weight


async def prepare_variant(
    endpoint: str, snapshot: dict[str, Any], pv: dict[str, Any], ctx: FleetContext
) -> VariantPlan:
    """Download and unpack the variant's model and build its environment, within its download bound."""
    model = snapshot["models"][pv["ModelName"]]
    containers = model_containers(model)
    direct = "Containers" in model and (model.get("InferenceExecutionConfig") or {}).get("Mode") == "Direct"
    if len(containers) > 1 or direct:  # imported here: those modules build on this one
        from moorage.fleet.pipeline import prepare_pipeline

        return await prepare_pipeline(endpoint, snapshot, pv, ctx)
    if containers and containers[0].get("Mode") == "MultiModel":
        from moorage.fleet.multimodel import prepare_multimodel

        return await prepare_multimodel(endpoint, snapshot, pv, ctx)
    name = model["ModelName"]
    prepared, recipe, environment = await prepare_container(endpoint, pv, name, containers[0], ctx)
    return variant_plan(snapshot, pv, ctx, prepared, recipe, environment)


async def prepare_container(
    endpoint: str, pv: dict[str, Any], model_name: str, container: dict[str, Any], ctx: FleetContext
) -> tuple[PreparedModel, ModelRecipe, dict[str, str]]:
    """One container's model downloaded, unpacked and given its environment, within the variant's
    ModelDataDownloadTimeoutInSeconds."""
    recipe = ModelRecipe.of(
        container, UnpackLimits(max_total_bytes=ctx.settings.max_unpacked_bytes), ctx.images
    )
    source = container.get("ModelDataUrl") or "ModelDataSource"
    ctx.logs.write(endpoint, f"Variant {pv['VariantName']}: preparing model {model_name} from {source}")
    timeout = download_timeout(pv)
    try:
        prepared, environment = await asyncio.wait_for(
            asyncio.to_thread(
                prepare_recipe, recipe, ctx.settings.cache_dir, lambda line: ctx.logs.write(endpoint, line)
            ),
            timeout,
        )
    except TimeoutError:
        raise DeploymentFailed(
            f"Variant {pv['VariantName']}: ModelDataDownloadTimeoutInSeconds ({timeout:.0f} s) passed while "
            f"the model data from {source} was still being downloaded, unpacked or given its environment. "
            "Raise ModelDataDownloadTimeoutInSeconds or use a smaller artifact."
        ) from None
    return prepared, recipe, environment


def download_timeout(pv: dict[str, Any]) -> float:
    return float(pv.get("ModelDataDownloadTimeoutInSeconds", DEFAULT_DOWNLOAD_TIMEOUT))


def variant_plan(
    snapshot: dict[str, Any],
    pv: dict[str, Any],
    ctx: FleetContext,
    prepared: PreparedModel,
    recipe: ModelRecipe,
    environment: dict[str, str],
    **extra: Any,
) -> VariantPlan:
    """The plan of a variant whose (first) container is prepared: capacity, timeouts, routing;
    `extra` sets the multi-container and multi-model members."""
    instances, weight = variant_capacity(snapshot, pv)
    kind = str(pv.get("InstanceType") or "")
    serverless = serverless_config(snapshot, pv)
    if serverless is not None:  # zero instances until a request comes, unless some are provisioned
        if extra:
            raise DeploymentFailed(
                f"Variant {pv['VariantName']} has a ServerlessConfig, and serverless endpoints serve one "
                "single-container model: not a multi-model endpoint or an inference pipeline. Use "
                "InstanceType and InitialInstanceCount for this model."
            )
        instances, kind = warm_instances(serverless), serverless_instance_type(serverless)
        # on a cluster, the worker count follows the CPUs the instance reserves there
        environment = instance_environment(
            serverless, environment, getattr(ctx.provider, "serverless_cpus", None)
        )
    return VariantPlan(
        name=pv["VariantName"],
        prepared=prepared,
        recipe=recipe,
        instance_type=kind,
        download_timeout=download_timeout(pv),
        deployment=deployment_key(snapshot),
        environment=environment,
        startup_timeout=float(pv.get("ContainerStartupHealthCheckTimeoutInSeconds", DEFAULT_STARTUP_TIMEOUT)),
        instances=instances,
        weight=weight,
        timeout=invocation_timeout(environment),
        routing=(pv.get("RoutingConfig") or {}).get("RoutingStrategy", DEFAULT_ROUTING),
        serverless=serverless,
        **extra,
    )
