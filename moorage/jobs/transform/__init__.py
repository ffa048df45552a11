"""Batch transform's data handling: records and requests (records.py), DataProcessing filters and the
join (filters.py), RecordIO and TFRecord framing (framing.py), manifests (manifest.py)."""

from moorage.jobs.transform.manifest import ManifestError, read_manifest
from moorage.jobs.transform.records import (
    RecordError,
    Request,
    TransformSettings,
    assemble,
    check_join,
    check_settings,
    requests_for,
)

__all__ = [
    "ManifestError",
    "RecordError",
    "Request",
    "TransformSettings",
    "assemble",
    "check_join",
    "check_settings",
    "read_manifest",
    "requests_for",
]
