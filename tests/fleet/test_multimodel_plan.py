"""A multi-model variant's plan: the instance's MOORAGE_MME_* settings (budget precedence, cache
setting, worker count, timeout), an empty model directory on the runtime's own Python, its gate, and the
configurations it refuses with a FailureReason."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from moorage.dataplane.multimodel import MultiModelGate
from moorage.fleet.gates import variant_gate
from moorage.fleet.plan import DeploymentFailed, VariantPlan, prepare_variant
from moorage.images import RegisteredImage
from tests.fleet.fakes import FakeProvider, context
from tests.support.clock import FakeClock

GIB = 1024**3


def _snapshot(
    container: dict[str, Any], instance_type: str = "ml.m5.xlarge", **config: Any
) -> dict[str, Any]:
    variant = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 2, "InstanceType": instance_type}
    return {
        "models": {"m": {"ModelName": "m", "PrimaryContainer": {"Mode": "MultiModel", **container}}},
        "config": {"EndpointConfigName": "c", "ProductionVariants": [variant], **config},
        "accepted_at": 1.0,
    }


def _plan(tmp_path: Path, snapshot: dict[str, Any]) -> VariantPlan:
    ctx = context(FakeProvider(FakeClock()), tmp_path, cache_dir=tmp_path / "cache")  # type: ignore[arg-type]
    pv = snapshot["config"]["ProductionVariants"][0]
    return asyncio.run(prepare_variant("ep", snapshot, pv, ctx))


def test_the_instance_gets_the_prefix_its_budget_and_an_empty_model_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOORAGE_MME_MEMORY_BYTES", raising=False)
    monkeypatch.setenv("MOORAGE_MME_READY_WAIT_SECONDS", "7")
    container = {
        "ModelDataUrl": "s3://bucket/models/",
        "MultiModelConfig": {"ModelCacheSetting": "Disabled"},
        "Environment": {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS": "20",
        },
    }
    plan = _plan(tmp_path, _snapshot(container))
    env = plan.environment
    assert env["MOORAGE_MME_SOURCE"] == "s3://bucket/models/"
    assert env["MOORAGE_MME_MEMORY_BYTES"] == str(16 * GIB)  # ml.m5.xlarge
    assert env["MOORAGE_MME_DISK_BYTES"] == str(20 * GIB)
    assert env["MOORAGE_MME_CACHING"] == "Disabled"
    assert env["MOORAGE_MME_READY_WAIT_SECONDS"] == "7"
    assert env["MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS"] == "20"
    assert env["MOORAGE_MME_MODEL_WORKERS"] == "3"
    assert env["MOORAGE_MME_CACHE_DIR"] == str((tmp_path / "cache" / "multimodel").absolute())
    assert env["SAGEMAKER_MULTI_MODEL"] == "true" and env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"
    assert "MOORAGE_MME_IMAGE" not in env  # no registered image
    assert plan.prepared.python == sys.executable and not any(plan.prepared.model_dir.iterdir())
    assert "ModelDataUrl" not in plan.recipe.container  # a node preparing it again gets an empty dir too
    gate = variant_gate(plan, None)
    assert isinstance(gate, MultiModelGate) and gate.spill_at == 6  # 2 x the 3 workers


def test_the_budget_comes_from_the_server_then_the_instance_type_then_2_gib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = {"ModelDataUrl": "s3://bucket/models/"}
    monkeypatch.setenv("MOORAGE_MME_MEMORY_BYTES", "123456789")
    assert _plan(tmp_path, _snapshot(container)).environment["MOORAGE_MME_MEMORY_BYTES"] == "123456789"
    monkeypatch.delenv("MOORAGE_MME_MEMORY_BYTES")
    monkeypatch.setenv("MOORAGE_INSTANCE_TYPES", json.dumps({"ml.tiny": {"cpus": 1, "memory_gib": 0.5}}))
    plan = _plan(tmp_path, _snapshot(container, "ml.tiny"))
    assert plan.environment["MOORAGE_MME_MEMORY_BYTES"] == str(GIB // 2)
    plan = _plan(tmp_path, _snapshot(container, "ml.unknown.size"))
    assert plan.environment["MOORAGE_MME_MEMORY_BYTES"] == str(2 * GIB)


@pytest.mark.parametrize(
    ("container", "config", "words"),
    [
        ({}, {}, "has no ModelDataUrl"),
        ({"ModelDataUrl": "ftp://host/models/"}, {}, "unsupported scheme"),
        (
            {"ModelDataUrl": "s3://b/m/", "MultiModelConfig": {"ModelCacheSetting": "Sometimes"}},
            {},
            "Sometimes",
        ),
        (
            {"ModelDataUrl": "s3://b/m/"},
            {"AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/out"}}},
            "Remove AsyncInferenceConfig",
        ),
    ],
)
def test_what_a_multi_model_variant_cannot_be_fails_the_deployment(
    tmp_path: Path, container: dict[str, Any], config: dict[str, Any], words: str
) -> None:
    with pytest.raises(DeploymentFailed) as failed:
        _plan(tmp_path, _snapshot(container, **config))
    assert words in str(failed.value)


def test_a_bad_server_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_MME_DISK_BYTES", "lots")
    with pytest.raises(DeploymentFailed) as failed:
        _plan(tmp_path, _snapshot({"ModelDataUrl": "s3://b/m/"}))
    assert "MOORAGE_MME_DISK_BYTES='lots'" in str(failed.value)


class _Images:
    """An image registry holding one registered image."""

    def __init__(self, image: RegisteredImage) -> None:
        self.image = image

    def get(self, uri: str) -> RegisteredImage | None:
        return self.image if uri == self.image.uri else None


def _with_image(tmp_path: Path, image: RegisteredImage, provider: Any = None) -> VariantPlan:
    ctx = replace(
        context(provider or FakeProvider(FakeClock()), tmp_path, cache_dir=tmp_path / "cache"),  # type: ignore[arg-type]
        images=_Images(image),
    )
    snapshot = _snapshot(
        {"ModelDataUrl": "s3://b/m/", "Image": image.uri, "Environment": {"MODEL_SETTING": "model's"}}
    )
    return asyncio.run(prepare_variant("ep", snapshot, snapshot["config"]["ProductionVariants"][0], ctx))


def test_a_registered_image_travels_to_the_instance(tmp_path: Path) -> None:
    built_in = RegisteredImage("my/image:1", "command line", "3.11", ("tabulate==0.9.0",), None, False)
    env = _with_image(tmp_path, built_in).environment
    assert json.loads(env["MOORAGE_MME_IMAGE"])["requirements"] == ["tabulate==0.9.0"]
    assert env["MOORAGE_MME_IMAGE_URI"] == "my/image:1"
    assert "MOORAGE_MME_COMMAND" not in env and "MOORAGE_MME_PYTHON" not in env


def test_a_framework_image_uri_reaches_the_instance(tmp_path: Path) -> None:
    uri = "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-inference:2.1.0-cpu-py310"
    plan = _plan(tmp_path, _snapshot({"ModelDataUrl": "s3://b/m/", "Image": uri}))
    assert plan.environment["MOORAGE_MME_IMAGE_URI"] == uri  # each model's packages follow the framework
    assert "MOORAGE_MME_IMAGE" not in plan.environment  # not registered


def test_an_image_with_its_own_server_runs_it_in_the_images_environment(tmp_path: Path) -> None:
    own = RegisteredImage(
        "my/server:1",
        "command line",
        f"{sys.version_info.major}.{sys.version_info.minor}",
        (),
        ("python", "-m", "my_server", "serve"),
        True,
        environment={"IMAGE_SETTING": "image's", "MODEL_SETTING": "image's"},
    )
    plan = _with_image(tmp_path, own)
    env = plan.environment
    assert json.loads(env["MOORAGE_MME_COMMAND"]) == ["python", "-m", "my_server", "serve"]
    assert env["MOORAGE_MME_PYTHON"] == sys.executable  # the image's interpreter (no packages to add)
    assert env["IMAGE_SETTING"] == "image's" and env["MODEL_SETTING"] == "model's"  # the model's wins
    assert json.loads(env["MOORAGE_MME_IMAGE"])["own_server"] is True
    # the manager itself: an empty model directory on the runtime's own interpreter
    assert plan.prepared.python == sys.executable and plan.recipe.image is None


def test_an_image_with_its_own_server_is_refused_on_a_cluster(tmp_path: Path) -> None:
    own = RegisteredImage("my/server:1", "command line", "3.11", (), ("serve",), True)
    provider = FakeProvider(FakeClock())
    provider.outlives_server = True  # type: ignore[misc]
    with pytest.raises(DeploymentFailed) as failed:
        _with_image(tmp_path, own, provider)
    assert "runs its own model server" in str(failed.value) and "--compute ray" in str(failed.value)
