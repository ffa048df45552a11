"""Batch transform settings for the record-handling tests (tests/jobs/test_transform_*.py)."""

from __future__ import annotations

from typing import Any

from moorage.jobs.transform import TransformSettings

MB = 1024 * 1024


def settings(**changes: Any) -> TransformSettings:
    """A job's settings: CSV lines in and out, MultiRecord within 6 MB, no filters or join, but for
    `changes` (TransformSettings fields)."""
    base: dict[str, Any] = {
        "split_type": "Line",
        "batch_strategy": "MultiRecord",
        "max_payload_bytes": 6 * MB,
        "compression": "None",
        "assemble_with": "Line",
        "content_type": "text/csv",
        "accept": "text/csv",
        "input_filter": "$",
        "output_filter": "$",
        "join_source": "None",
    }
    return TransformSettings(**{**base, **changes})
