"""What CreateEndpointConfig refuses in a DataCaptureConfig, and how a config is read."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.capture.config import CaptureSpec, check_capture_config


def _params(**capture: Any) -> dict[str, Any]:
    config = {
        "InitialSamplingPercentage": 50,
        "DestinationS3Uri": "s3://bucket/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}],
        **capture,
    }
    return {"EndpointConfigName": "cfg", "DataCaptureConfig": config}


@pytest.mark.parametrize(
    "destination", ["s3://bucket", "s3://bucket/a/b/", "/var/capture", "file:///var/capture", "~/capture"]
)
def test_s3_and_absolute_local_destinations_are_accepted(destination: str) -> None:
    check_capture_config(_params(DestinationS3Uri=destination))


@pytest.mark.parametrize(
    ("destination", "words"),
    [
        ("https://bucket.s3.amazonaws.com/capture", "is an https:// URL"),
        ("s3:///capture", "has no bucket name"),
        ("capture/here", "neither an s3:// location nor an absolute path"),
        ("ftp://host/capture", "unsupported scheme"),
    ],
)
def test_destinations_that_cannot_be_written_are_refused(destination: str, words: str) -> None:
    with pytest.raises(ValidationException) as refused:
        check_capture_config(_params(DestinationS3Uri=destination))

    assert words in refused.value.message
    assert "DataCaptureConfig.DestinationS3Uri" in refused.value.message


def test_a_content_type_in_both_lists_is_refused() -> None:
    header = {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json", "Text/CSV"]}

    with pytest.raises(ValidationException) as refused:
        check_capture_config(_params(CaptureContentTypeHeader=header))

    assert "text/csv in both CsvContentTypes and JsonContentTypes" in refused.value.message


def test_no_capture_config_is_nothing_to_check() -> None:
    check_capture_config({"EndpointConfigName": "cfg"})


def test_spec_reads_modes_types_and_defaults() -> None:
    spec = CaptureSpec.of(
        _params(
            CaptureOptions=[{"CaptureMode": "Output"}, {"CaptureMode": "Input"}],
            CaptureContentTypeHeader={"CsvContentTypes": ["Text/CSV"]},
            KmsKeyId="alias/capture",
        )["DataCaptureConfig"]
    )
    both = CaptureSpec.of(_params(CaptureOptions=[{"CaptureMode": "InputAndOutput"}])["DataCaptureConfig"])

    assert (spec.enabled, spec.percentage, spec.capture_input, spec.capture_output) == (True, 50, True, True)
    assert spec.csv_types == {"text/csv"} and spec.json_types == frozenset()
    assert spec.kms_key_id == "alias/capture"
    assert both.capture_input and both.capture_output
