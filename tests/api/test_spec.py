"""The models come from botocore, once per service."""

from __future__ import annotations

import pytest

from moorage.api.spec import load_service


@pytest.mark.parametrize(
    ("name", "protocol", "target_prefix"),
    [
        ("sagemaker", "json", "SageMaker"),
        ("sagemaker-runtime", "rest-json", None),
        ("application-autoscaling", "json", "AnyScaleFrontendService"),
    ],
)
def test_load_service(name: str, protocol: str, target_prefix: str | None) -> None:
    service = load_service(name)
    assert service.service_name == name
    assert service.protocol == protocol
    assert service.metadata.get("targetPrefix") == target_prefix


def test_load_service_is_cached() -> None:
    assert load_service("sagemaker") is load_service("sagemaker")
