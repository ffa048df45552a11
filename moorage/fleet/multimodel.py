"""Multi-model variants (Mode MultiModel): the instance's settings and its gate (docs/multimodel.md).

Nothing is downloaded when the endpoint is created: an instance starts with an empty model directory and
the settings below in its environment, and loads each model when the first request names it
(moorage/serving/multimodel/). The front door places requests (moorage/dataplane/multimodel.py)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from moorage.artifacts import UnpackLimits
from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.fetch import current_store
from moorage.artifacts.locations import parse_location
from moorage.artifacts.prepare import ModelRecipe, prepare_recipe
from moorage.compute.instance_types import load_instance_types
from moorage.fleet.plan import (
    DeploymentFailed,
    VariantPlan,
    download_timeout,
    invocation_timeout,
    model_containers,
    variant_plan,
)
from moorage.fleet.settings import FleetContext
from moorage.images import resolve_image

GIB = 1024**3
DEFAULT_MEMORY_BYTES = 2 * GIB  # an InstanceType this server does not know the size of
DEFAULT_DISK_BYTES = 20 * GIB
DEFAULT_READY_WAIT_SECONDS = 50.0
# a request for a model goes to its next-ranked instance once the preferred one has this many requests
# outstanding per model-server worker (SAGEMAKER_MODEL_SERVER_WORKERS)
SPILL_PER_WORKER = 2
_CACHE_SETTINGS = ("Enabled", "Disabled")


@dataclass(frozen=True)
class MultiModelSettings:
    """A multi-model variant's settings, as its instances get them (MOORAGE_MME_* variables)."""

    source: str  # the ModelDataUrl prefix (or ModelDataSource S3Uri) every TargetModel is under
    memory_bytes: int  # what loaded models may take on one instance
    disk_bytes: int  # what downloaded, unpacked models may take on the instance's disk
    caching: str  # MultiModelConfig.ModelCacheSetting: Enabled, or Disabled (unload after each request)
    ready_wait_seconds: float  # a request waits this long for its model's load, then ModelNotReady
    model_workers: int  # SAGEMAKER_MODEL_SERVER_WORKERS: processes per loaded model
    spill_at: int  # outstanding requests on the preferred instance before a model spills to the next


async def prepare_multimodel(
    endpoint: str, snapshot: dict[str, Any], pv: dict[str, Any], ctx: FleetContext
) -> VariantPlan:
    """Nothing to download before the first request: the instance loads models as they are asked for."""
    model = snapshot["models"][pv["ModelName"]]
    name = model["ModelName"]
    container = model_containers(model)[0]
    if (snapshot.get("config") or {}).get("AsyncInferenceConfig"):
        raise DeploymentFailed(
            f"Model {name} uses Mode=MultiModel, and asynchronous endpoints serve one model: "
            "InvokeEndpointAsync has no TargetModel. Remove AsyncInferenceConfig from the endpoint config, "
            "or create a model with one model's ModelDataUrl."
        )
    source = _source(name, container)
    image_uri = str(container.get("Image") or "").strip()
    runtime = resolve_image(image_uri, ctx.images)
    own = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
    settings = _settings(name, source, container, own, str(pv.get("InstanceType") or ""))
    limits = UnpackLimits(max_total_bytes=ctx.settings.max_unpacked_bytes)
    # the instance itself starts with an empty model directory and the runtime's own Python, on this
    # machine and on any node that prepares the recipe again (moorage/compute/ray_host.py)
    recipe = ModelRecipe.of({}, limits, None)
    ctx.logs.write(
        endpoint,
        f"Variant {pv['VariantName']}: multi-model endpoint over {source} "
        f"(memory budget {settings.memory_bytes / GIB:g} GiB per instance, cache {settings.caching})",
    )
    image_env: dict[str, str] = {}  # an own server's image environment (its ENV, its venv)
    server: dict[str, str] = {}  # and the instance's variables that start it
    if runtime.command is not None:
        image_env, server = await _own_server(endpoint, name, image_uri, runtime.command, limits, pv, ctx)
    prepared, prepared_env = await asyncio.wait_for(
        asyncio.to_thread(prepare_recipe, recipe, ctx.settings.cache_dir, lambda _: None),
        download_timeout(pv),
    )
    # the model's own Environment over the image's; the manager's own variables over both
    environment = {
        **prepared_env,
        **image_env,
        **own,
        **_instance_environment(settings, own, ctx, image_uri),
        **server,
    }
    return variant_plan(snapshot, pv, ctx, prepared, recipe, environment, multi_model=settings)


async def _own_server(
    endpoint: str,
    name: str,
    image_uri: str,
    command: tuple[str, ...],
    limits: UnpackLimits,
    pv: dict[str, Any],
    ctx: FleetContext,
) -> tuple[dict[str, str], dict[str, str]]:
    """The environment of an image that runs its own multi-model server, built here at deploy time (its
    packages, its Python, its ENV), and MOORAGE_MME_COMMAND and MOORAGE_MME_PYTHON: the instance
    (itself on the runtime's interpreter) starts that one server with them. On a cluster the instance runs
    on a node whose paths this machine does not know, so there it is refused."""
    if ctx.provider.outlives_server:
        raise DeploymentFailed(
            f"Model {name} uses Mode=MultiModel with image {image_uri}, which runs its own model server "
            f"(`{' '.join(command)}`); on a cluster (--compute ray) multi-model endpoints run the built-in "
            "runtime only, as the image's environment is built on this machine. Serve it on this machine "
            "(--compute local), or register the image without its server command."
        )
    log_lines: list[str] = []
    image_prepared, image_env = await asyncio.wait_for(
        asyncio.to_thread(
            prepare_recipe,
            ModelRecipe.of({"Image": image_uri}, limits, ctx.images),
            ctx.settings.cache_dir,
            log_lines.append,
        ),
        download_timeout(pv),
    )
    for line in log_lines:
        ctx.logs.write(endpoint, line)
    ctx.logs.write(
        endpoint,
        f"Variant {pv['VariantName']}: image {image_uri} runs its own multi-model server "
        f"(`{' '.join(command)}`, Python {image_prepared.python})",
    )
    return image_env, {
        "MOORAGE_MME_COMMAND": json.dumps(list(command)),
        "MOORAGE_MME_PYTHON": image_prepared.python,
    }


def _source(name: str, container: Mapping[str, Any]) -> str:
    """The prefix the models are under, checked to be a location this server reads."""
    url = container.get("ModelDataUrl")
    data_source = container.get("ModelDataSource") or {}
    s3 = data_source.get("S3DataSource") if isinstance(data_source, Mapping) else None
    source = str(url or (s3 or {}).get("S3Uri") or "").strip()
    if not source:
        raise DeploymentFailed(
            f"Model {name} uses Mode=MultiModel but has no ModelDataUrl: set it to the S3 prefix (or "
            "file:// directory) the models are under; TargetModel names a model relative to it."
        )
    try:
        parse_location(source, "ModelDataUrl")
    except ArtifactError as exc:
        raise DeploymentFailed(f"Model {name}: {exc}") from None
    return source


def _settings(
    name: str, source: str, container: Mapping[str, Any], own: Mapping[str, str], instance_type: str
) -> MultiModelSettings:
    caching = str((container.get("MultiModelConfig") or {}).get("ModelCacheSetting") or "Enabled")
    if caching not in _CACHE_SETTINGS:
        raise DeploymentFailed(
            f"Model {name}: MultiModelConfig.ModelCacheSetting {caching!r} is not Enabled or Disabled."
        )
    workers = _number(own, "SAGEMAKER_MODEL_SERVER_WORKERS", 1, f"Model {name}'s Environment")
    return MultiModelSettings(
        source=source,
        memory_bytes=_memory_budget(instance_type),
        disk_bytes=_number(
            os.environ, "MOORAGE_MME_DISK_BYTES", DEFAULT_DISK_BYTES, "The server's environment"
        ),
        caching=caching,
        ready_wait_seconds=_seconds(os.environ, "MOORAGE_MME_READY_WAIT_SECONDS", DEFAULT_READY_WAIT_SECONDS),
        model_workers=max(1, workers),
        spill_at=SPILL_PER_WORKER * max(1, workers),
    )


def _memory_budget(instance_type: str) -> int:
    """MOORAGE_MME_MEMORY_BYTES from the server's environment, else the InstanceType's memory, else 2 GiB."""
    if os.environ.get("MOORAGE_MME_MEMORY_BYTES", "").strip():
        return _number(
            os.environ, "MOORAGE_MME_MEMORY_BYTES", DEFAULT_MEMORY_BYTES, "The server's environment"
        )
    try:
        known = load_instance_types().get(instance_type)
    except (OSError, ValueError):  # a bad MOORAGE_INSTANCE_TYPES is reported where instances are placed
        known = None
    return known.memory_bytes if known is not None else DEFAULT_MEMORY_BYTES


def _number(environ: Mapping[str, str], key: str, default: int, where: str) -> int:
    text = environ.get(key, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DeploymentFailed(f"{where} sets {key}={text!r}; it must be a whole number above zero.")
    return value


def _seconds(environ: Mapping[str, str], key: str, default: float) -> float:
    text = environ.get(key, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DeploymentFailed(
            f"The server's environment sets {key}={text!r}; it must be seconds above zero."
        )
    return value


def _instance_environment(
    settings: MultiModelSettings, own: Mapping[str, str], ctx: FleetContext, image_uri: str
) -> dict[str, str]:
    """The variables the instance's model manager reads (moorage/serving/multimodel/)."""
    store = current_store()
    registered = ctx.images.get(image_uri) if ctx.images is not None and image_uri else None
    environment = {
        "SAGEMAKER_MULTI_MODEL": "true",
        "MOORAGE_MME_SOURCE": settings.source,
        "MOORAGE_MME_MEMORY_BYTES": str(settings.memory_bytes),
        "MOORAGE_MME_DISK_BYTES": str(settings.disk_bytes),
        "MOORAGE_MME_CACHE_DIR": str((ctx.settings.cache_dir / "multimodel").absolute()),
        "MOORAGE_MME_CACHING": settings.caching,
        "MOORAGE_MME_READY_WAIT_SECONDS": f"{settings.ready_wait_seconds:g}",
        "MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS": f"{invocation_timeout(dict(own)):g}",
        "MOORAGE_MME_MODEL_WORKERS": str(settings.model_workers),
    }
    if store is not None:  # the store models are downloaded from (absent: boto3's own settings)
        environment["MOORAGE_MME_S3_STORE"] = json.dumps(list(store))
    if registered is not None:  # the packages and Python each model's environment starts from
        environment["MOORAGE_MME_IMAGE"] = json.dumps(asdict(registered), default=dict)
    if image_uri:  # a framework image (not registered) decides each model's packages from its URI
        environment["MOORAGE_MME_IMAGE_URI"] = image_uri
    return environment
