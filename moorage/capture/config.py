"""An endpoint config's DataCaptureConfig: what CreateEndpointConfig checks beyond the shape, and the parsed
form a capture tap keeps (so a captured request never looks at the config's dict again).

The shape's own rules (InitialSamplingPercentage 0-100, 1-32 CaptureOptions of Input / Output /
InputAndOutput, at most 10 content types of each kind, their pattern, KmsKeyId's pattern) are checked by
moorage/api/validate.py against botocore's model before this runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moorage.api.errors import ValidationException
from moorage.artifacts.locations import LocalLocation
from moorage.jobs.objects import ObjectError, location

DESTINATION_FIELD = "DataCaptureConfig.DestinationS3Uri"


@dataclass(frozen=True)
class CaptureSpec:
    """What one endpoint config asks data capture to do."""

    enabled: bool
    percentage: int
    destination: str
    capture_input: bool
    capture_output: bool
    # media types (lower case, no parameters) recorded as text with encoding CSV / JSON; others BASE64
    csv_types: frozenset[str]
    json_types: frozenset[str]
    kms_key_id: str | None

    @classmethod
    def of(cls, config: dict[str, Any]) -> CaptureSpec:
        modes = {option["CaptureMode"] for option in config.get("CaptureOptions") or []}
        header = config.get("CaptureContentTypeHeader") or {}
        return cls(
            enabled=bool(config.get("EnableCapture", True)),
            percentage=int(config.get("InitialSamplingPercentage", 0)),
            destination=str(config["DestinationS3Uri"]),
            capture_input=bool(modes & {"Input", "InputAndOutput"}),
            capture_output=bool(modes & {"Output", "InputAndOutput"}),
            csv_types=frozenset(media_type(t) for t in header.get("CsvContentTypes") or []),
            json_types=frozenset(media_type(t) for t in header.get("JsonContentTypes") or []),
            kms_key_id=config.get("KmsKeyId") or None,
        )


def media_type(content_type: str) -> str:
    """`text/csv; charset=utf-8` -> `text/csv`: what CsvContentTypes / JsonContentTypes are matched on."""
    return content_type.split(";", 1)[0].strip().lower()


def check_capture_config(params: dict[str, Any]) -> None:
    """Refuse, at CreateEndpointConfig, a DataCaptureConfig whose records could never be written or whose
    encoding would be ambiguous."""
    config = params.get("DataCaptureConfig")
    if not config:
        return
    destination = str(config["DestinationS3Uri"])
    if destination.lower().startswith("https://"):
        raise ValidationException(
            f"{DESTINATION_FIELD} {destination!r} is an https:// URL; this server writes captured data to "
            "s3://bucket/prefix (its S3 store) or to a folder on its disk (file:///path). Give the "
            "location as s3://bucket/prefix."
        )
    try:
        where = location(destination, DESTINATION_FIELD)
    except ObjectError as exc:
        raise ValidationException(str(exc)) from None
    if isinstance(where, LocalLocation) and not destination.strip().startswith(("/", "file://", "~")):
        raise ValidationException(
            f"{DESTINATION_FIELD} {destination!r} is neither an s3:// location nor an absolute path. Give "
            "s3://bucket/prefix, or a folder on the server as /absolute/path or file:///absolute/path."
        )
    header = config.get("CaptureContentTypeHeader") or {}
    csv_types = {media_type(t) for t in header.get("CsvContentTypes") or []}
    both = sorted(csv_types & {media_type(t) for t in header.get("JsonContentTypes") or []})
    if both:
        raise ValidationException(
            f"DataCaptureConfig.CaptureContentTypeHeader lists {', '.join(both)} in both CsvContentTypes "
            "and JsonContentTypes; a content type is captured with one encoding. List it in one of them."
        )
