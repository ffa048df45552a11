"""The one entry point the control plane calls: turn a ContainerDefinition into a runnable model."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.artifacts.environments import ensure_environment, find_requirements
from moorage.artifacts.materialize import empty_model_dir, materialize
from moorage.artifacts.sourcedir import fetch_submit_dir
from moorage.artifacts.sources import model_source
from moorage.artifacts.unpack import UnpackLimits

DEFAULT_LIMITS = UnpackLimits()


@dataclass(frozen=True)
class PreparedModel:
    """Everything an instance needs to start: where the model is and which Python runs it."""

    model_dir: Path  # unpacked, ready model directory (shared read-mostly by all instances of this artifact)
    python: str  # interpreter that instances must run with (a cached venv's python, or sys.executable)
    env_dir: Path | None  # the per-model venv, None when there is no code/requirements.txt
    code_dir: Path | None = None  # the unpacked archive SAGEMAKER_SUBMIT_DIRECTORY names, if it names one


def _ignore(_line: str) -> None:
    return None


def prepare_model(
    container: Mapping[str, Any],
    cache_dir: Path,
    limits: UnpackLimits = DEFAULT_LIMITS,
    log: Callable[[str], None] = _ignore,
) -> PreparedModel:
    """Fetch, unpack and set up the Python environment for one container, reusing cached work.

    ``container`` is a ContainerDefinition as boto3 sends it. Model data may be an ``s3://`` URI, a
    ``file://`` URI or a plain local path; a local *directory* is used in place (no copy). A
    container without model data gets an empty model directory. Blocking: call from a worker thread.
    Raises ArtifactError, whose text is a FailureReason the user can act on.
    """
    cache_dir = Path(cache_dir).absolute()
    source = model_source(container)
    model_dir = empty_model_dir(cache_dir) if source is None else materialize(source, cache_dir, limits, log)
    environment = container.get("Environment") or {}
    code_dir = fetch_submit_dir(environment, model_dir, cache_dir, limits, log)
    requirements = find_requirements(model_dir, environment, log, code_dir)
    if requirements is None:
        return PreparedModel(model_dir=model_dir, python=sys.executable, env_dir=None, code_dir=code_dir)
    env_dir = ensure_environment(requirements, code_dir or model_dir, cache_dir, log)
    python = str(env_dir / "bin" / "python")
    return PreparedModel(model_dir=model_dir, python=python, env_dir=env_dir, code_dir=code_dir)
