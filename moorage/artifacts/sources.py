"""Read where a ContainerDefinition's model data lives and how it is laid out.

``ModelDataUrl`` always names an archive (or, locally, a ready directory). ``ModelDataSource``
names an uncompressed object or prefix, or a gzip archive (``CompressionType: Gzip``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import Location, parse_location


class Layout(Enum):
    """How the bytes at a location turn into a model directory."""

    ARCHIVE = "archive"  # a tar (optionally compressed) to unpack
    OBJECT = "object"  # one file, placed as <model_dir>/<last key segment>
    PREFIX = "prefix"  # every object under a prefix, placed by its key minus the prefix


@dataclass(frozen=True)
class ModelSource:
    location: Location
    layout: Layout
    field: str  # the API member it came from, for error messages


_S3_SOURCE_FIELD = "ModelDataSource.S3DataSource.S3Uri"


def model_source(container: Mapping[str, Any]) -> ModelSource | None:
    """Where the container's model data comes from; None when it has none (code-only images)."""
    url = container.get("ModelDataUrl")
    data_source = container.get("ModelDataSource")
    if url and data_source:
        raise ArtifactError("Set either ModelDataUrl or ModelDataSource in the container, not both.")
    if url:
        return ModelSource(parse_location(str(url), "ModelDataUrl"), Layout.ARCHIVE, "ModelDataUrl")
    if not data_source:
        return None
    s3 = data_source.get("S3DataSource") if isinstance(data_source, Mapping) else None
    if not isinstance(s3, Mapping) or not s3.get("S3Uri"):
        raise ArtifactError(
            "ModelDataSource needs S3DataSource with S3Uri, S3DataType and CompressionType; "
            "other data sources are not supported."
        )
    location = parse_location(str(s3["S3Uri"]), _S3_SOURCE_FIELD)
    data_type = s3.get("S3DataType")
    compression = s3.get("CompressionType", "None")
    if data_type not in ("S3Object", "S3Prefix"):
        raise ArtifactError(
            f"ModelDataSource.S3DataSource.S3DataType must be S3Object or S3Prefix, not {data_type!r}."
        )
    if compression == "Gzip":
        if data_type != "S3Object":
            raise ArtifactError(
                "ModelDataSource with CompressionType Gzip needs S3DataType S3Object (a single .tar.gz)."
            )
        return ModelSource(location, Layout.ARCHIVE, _S3_SOURCE_FIELD)
    if compression != "None":
        raise ArtifactError(
            f"ModelDataSource.S3DataSource.CompressionType must be None or Gzip, not {compression!r}."
        )
    layout = Layout.OBJECT if data_type == "S3Object" else Layout.PREFIX
    return ModelSource(location, layout, _S3_SOURCE_FIELD)
