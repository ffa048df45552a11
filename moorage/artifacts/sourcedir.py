"""The model's code when ``SAGEMAKER_SUBMIT_DIRECTORY`` names an archive rather than a directory.

The SageMaker SDK's framework models (``SKLearnModel``, ``FrameworkModel(code_location=...)``) upload
``entry_point`` and ``source_dir`` as ``s3://bucket/prefix/sourcedir.tar.gz`` and point
``SAGEMAKER_SUBMIT_DIRECTORY`` at it, leaving the model archive without ``code/``. The archive is
fetched through the same S3 client, cache and safe extraction as model data (``materialize``), and
its unpacked directory becomes the code directory: its ``requirements.txt`` builds the environment
and the instance imports ``SAGEMAKER_PROGRAM`` from it.

A directory (``/opt/ml/model/code``, a local path) is left to the callers that already handle it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import LocalLocation, Location, parse_location
from moorage.artifacts.materialize import materialize
from moorage.artifacts.sources import Layout, ModelSource
from moorage.artifacts.unpack import UnpackLimits

SUBMIT_DIRECTORY = "SAGEMAKER_SUBMIT_DIRECTORY"
_CONTAINER_MODEL_DIR = "/opt/ml/model"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_ADVICE = (
    f"Point {SUBMIT_DIRECTORY} at a gzipped tar of the code directory (the sourcedir.tar.gz that the "
    "SageMaker SDK uploads for entry_point and source_dir), or leave it unset to use code/ in the model."
)


def fetch_submit_dir(
    environment: Mapping[str, Any],
    model_dir: Path,
    cache_dir: Path,
    limits: UnpackLimits,
    log: Callable[[str], None],
) -> Path | None:
    """The unpacked code directory when ``SAGEMAKER_SUBMIT_DIRECTORY`` names an archive, else None.

    Raises ArtifactError naming the variable when the archive is missing, unreadable or unsafe.
    """
    submit = str(environment.get(SUBMIT_DIRECTORY) or "").strip()
    try:
        location = _archive_location(submit, model_dir)
        if location is None:
            return None
        log(f"Fetching the model's code from {SUBMIT_DIRECTORY}={submit}")
        code_dir = materialize(
            ModelSource(location, Layout.ARCHIVE, SUBMIT_DIRECTORY), cache_dir, limits, log
        )
    except ArtifactError as exc:
        raise ArtifactError(
            f"{SUBMIT_DIRECTORY}={submit} cannot be used as the model's code: {exc} {_ADVICE}"
        ) from None
    log(f"The model's code from {submit} is in {code_dir}")
    return code_dir


def _archive_location(submit: str, model_dir: Path) -> Location | None:
    """Where the archive is; None for no value, a directory, or a path left to the older rules."""
    if not submit or submit == _CONTAINER_MODEL_DIR or submit.startswith(_CONTAINER_MODEL_DIR + "/"):
        return None
    scheme = submit.split("://", 1)[0].lower() if "://" in submit else ""
    if scheme == "s3":
        return parse_location(submit, SUBMIT_DIRECTORY)
    if scheme not in ("", "file"):
        return None
    if scheme == "" and not Path(submit).expanduser().is_absolute():
        submit = str(model_dir / submit)  # relative to the model, as for a directory
    location = parse_location(submit, SUBMIT_DIRECTORY)
    if not isinstance(location, LocalLocation):
        return location
    path = location.path
    try:
        if path.is_dir():
            return None
        if path.exists() or path.name.lower().endswith(_ARCHIVE_SUFFIXES):
            return location
    except OSError:
        return location  # materialize reports what is wrong with it
    return None
