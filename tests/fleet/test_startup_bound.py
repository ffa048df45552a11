"""ContainerStartupHealthCheckTimeoutInSeconds, from the endpoint config to a real instance's start: a model
still loading when it passes fails the deployment with a reason that names the bound, and leaves nothing
running.

The API's minimum is 60 s; the fleet takes any value, so the deployment here uses 1 s to show in a second
what an endpoint shows in a minute. The reconciler writes a DeploymentFailed's text as the endpoint's
FailureReason, which tests/e2e/test_deploy_failures.py shows through a server; tests/e2e/test_fleets.py
shows that a server keeps the field in the config that deployments are planned from."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moorage.clock import SystemClock
from moorage.compute.local import LocalProvider
from moorage.fleet import DeploymentFailed, FleetContext, FleetSettings, deploy_fleet
from moorage.fleet.plan import DEFAULT_STARTUP_TIMEOUT, prepare_variant
from moorage.logs import EndpointLogs
from tests.support.processes import running

FIELD = "ContainerStartupHealthCheckTimeoutInSeconds"


@pytest.fixture
async def provider() -> AsyncIterator[LocalProvider]:
    """Real local instances; their sockets live in a short directory (Unix socket paths are ≤ 107 bytes)."""
    run_dir = Path(tempfile.mkdtemp(prefix="msb-", dir="/tmp"))
    local = LocalProvider(run_dir)
    yield local
    await local.close()
    shutil.rmtree(run_dir, ignore_errors=True)


def _context(provider: LocalProvider, tmp_path: Path) -> FleetContext:
    return FleetContext(
        provider=provider,
        logs=EndpointLogs(tmp_path / "logs"),
        clock=SystemClock(),
        settings=FleetSettings(cache_dir=tmp_path / "cache"),
        region="us-east-1",
        account="123456789012",
    )


def _snapshot(model_dir: Path, **variant: Any) -> dict[str, Any]:
    """What CreateEndpoint accepts: the endpoint config as CreateEndpointConfig stored it, and its model."""
    pv = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    container = {"ModelDataUrl": str(model_dir), "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}}
    return {
        "models": {"m": {"ModelName": "m", "PrimaryContainer": container}},
        "config": {"EndpointConfigName": "c", "ProductionVariants": [{**pv, **variant}]},
        "accepted_at": 1.0,
    }


def _model(tmp_path: Path, inference: str) -> Path:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "code" / "inference.py").write_text(inference)
    return model


async def test_the_field_is_the_plans_start_up_bound(provider: LocalProvider, tmp_path: Path) -> None:
    ctx = _context(provider, tmp_path)
    model = _model(tmp_path, "def model_fn(model_dir):\n    return {}\n")
    for variant, bound in [({FIELD: 60}, 60.0), ({}, DEFAULT_STARTUP_TIMEOUT)]:
        snapshot = _snapshot(model, **variant)
        plan = await prepare_variant("ep", snapshot, snapshot["config"]["ProductionVariants"][0], ctx)
        assert plan.startup_timeout == bound


async def test_a_model_still_loading_at_the_bound_fails_the_deployment_with_its_name(
    provider: LocalProvider, tmp_path: Path
) -> None:
    pid_file = tmp_path / "loading.pid"
    slow_load = (
        f"import os, time\n\ndef model_fn(model_dir):\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    time.sleep(300)\n"
    )
    snapshot = _snapshot(_model(tmp_path, slow_load), **{FIELD: 1})
    with pytest.raises(DeploymentFailed) as failure:
        # without the field the default bound (600 s) would apply: fail here instead of waiting for it
        await asyncio.wait_for(deploy_fleet("ep", snapshot, _context(provider, tmp_path)), 60)
    assert f"{FIELD} (1 s) passed while the instance was still loading the model" in str(failure.value)
    assert not running(int(pid_file.read_text()))  # the instance was stopped, not left loading
