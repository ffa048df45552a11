"""The one entry point the control plane calls: turn a ContainerDefinition into a runnable model."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from moorage.artifacts.environments import ImagePackages, ensure_environment, find_requirements
from moorage.artifacts.fetch import current_store, use_store
from moorage.artifacts.materialize import empty_model_dir, materialize
from moorage.artifacts.sourcedir import fetch_submit_dir
from moorage.artifacts.sources import model_source
from moorage.artifacts.unpack import UnpackLimits
from moorage.images import ImageLookup, RegisteredImage, resolve_image
from moorage.serving.settings import CODE_DIR_VARIABLE

DEFAULT_LIMITS = UnpackLimits()


@dataclass(frozen=True)
class PreparedModel:
    """Everything an instance needs to start: where the model is and which Python runs it."""

    model_dir: Path  # unpacked, ready model directory (shared read-mostly by all instances of this artifact)
    python: str  # interpreter that instances must run with (a cached venv's python, or sys.executable)
    env_dir: Path | None  # the per-model venv, None when there is no code/requirements.txt
    code_dir: Path | None = None  # the unpacked archive SAGEMAKER_SUBMIT_DIRECTORY names, if it names one
    command: tuple[str, ...] | None = None  # the image's own HTTP server; None: the built-in runtime
    image_environment: Mapping[str, str] = field(default_factory=dict)  # the image's ENV


@dataclass(frozen=True)
class ModelRecipe:
    """Everything needed to prepare one container's model, on this machine or another: a provider whose
    instances run elsewhere (a Ray node) prepares the model again where the instance runs."""

    container: Mapping[str, Any]  # the ContainerDefinition
    limits: UnpackLimits
    image: RegisteredImage | None  # the registered image the container names, looked up where accepted
    store: tuple[str, bool] | None  # the S3 store downloads use (fetch.use_store); None: boto3's settings

    @classmethod
    def of(
        cls, container: Mapping[str, Any], limits: UnpackLimits, images: ImageLookup | None
    ) -> ModelRecipe:
        uri = str(container.get("Image") or "").strip()
        image = images.get(uri) if images is not None and uri else None
        return cls(container, limits, image, current_store())


class _Registered:
    """The one registered image a recipe carries, as an ImageLookup."""

    def __init__(self, image: RegisteredImage | None) -> None:
        self.image = image

    def get(self, uri: str) -> RegisteredImage | None:
        return self.image


def prepare_recipe(
    recipe: ModelRecipe, cache_dir: Path, log: Callable[[str], None]
) -> tuple[PreparedModel, dict[str, str]]:
    """Prepare a recipe's model; returns it with the instance environment: the image's ENV, the model's
    Environment over it, and the variables that point the runtime at the venv and the submitted code.
    Blocking: call from a worker thread."""
    if recipe.store is not None and current_store() != recipe.store:
        use_store(*recipe.store)
    prepared = prepare_model(recipe.container, cache_dir, recipe.limits, log, _Registered(recipe.image))
    own = {str(k): str(v) for k, v in (recipe.container.get("Environment") or {}).items()}
    environment = {**prepared.image_environment, **own}  # the model's Environment wins
    if prepared.env_dir is not None:
        environment.setdefault("VIRTUAL_ENV", str(prepared.env_dir))
        environment["PATH"] = f"{prepared.env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    if prepared.code_dir is not None:
        environment[CODE_DIR_VARIABLE] = str(prepared.code_dir)
    return prepared, environment


def _ignore(_line: str) -> None:
    return None


def prepare_model(
    container: Mapping[str, Any],
    cache_dir: Path,
    limits: UnpackLimits = DEFAULT_LIMITS,
    log: Callable[[str], None] = _ignore,
    images: ImageLookup | None = None,
) -> PreparedModel:
    """Fetch, unpack and set up the Python environment for one container, reusing cached work.

    ``container`` is a ContainerDefinition as boto3 sends it. Model data may be an ``s3://`` URI, a
    ``file://`` URI or a plain local path; a local *directory* is used in place (no copy). A
    container without model data gets an empty model directory. Blocking: call from a worker thread.
    Raises ArtifactError, whose text is a FailureReason the user can act on. The container's image
    decides the environment and command (moorage/images/resolve.py); ``images`` holds registered ones.
    """
    cache_dir = Path(cache_dir).absolute()
    source = model_source(container)
    model_dir = empty_model_dir(cache_dir) if source is None else materialize(source, cache_dir, limits, log)
    environment = container.get("Environment") or {}
    code_dir = fetch_submit_dir(environment, model_dir, cache_dir, limits, log)
    image = resolve_image(container.get("Image"), images)
    log(image.description)
    found = find_requirements(model_dir, environment, log, code_dir) if image.model_requirements else None
    prepared = PreparedModel(
        model_dir, sys.executable, None, code_dir, command=image.command, image_environment=image.environment
    )
    if found is None and not image.requirements and image.python is None:
        return prepared
    packages = ImagePackages(image.label, image.requirements, image.wheels_only, image.python)
    env_dir = ensure_environment(found, code_dir or model_dir, cache_dir, log, packages)
    return replace(prepared, python=str(env_dir / "bin" / "python"), env_dir=env_dir)
