"""What a running server's GET /metrics (Prometheus text) says of one endpoint, for the tests and
bench/serverless.py."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def endpoint_metric(url: str, name: str, endpoint: str, container: str | None = None) -> float:
    """The sum of the samples `name` labelled with `endpoint` (over its variants), at the server `url`;
    with `container`, only that container's samples."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
        and sample.labels.get("endpoint") == endpoint
        and (container is None or sample.labels.get("container") == container)
    )
