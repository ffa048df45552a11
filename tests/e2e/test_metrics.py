"""GET /metrics: CloudWatch's AWS/SageMaker metrics in Prometheus format, checked against the requests
actually sent through boto3."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import deploy
from tests.support.moorage_server import RunningServer, moorage_server


def _scrape(server: RunningServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> labels -> value."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _value(samples: dict[str, Any], name: str, **labels: str) -> float:
    matching = [v for k, v in samples.get(name, {}).items() if labels.items() <= dict(k).items()]
    assert matching, f"no {name} with {labels}"
    return float(sum(matching))


def test_metrics_count_what_was_sent(server: RunningServer, sm: Any, smr: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
    ok, crashes, refused = 25, 3, 4
    for _ in range(ok):
        smr.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=b'{"sleep": 0.01}')
    for _ in range(crashes):  # predict_fn raises: the model answers 500
        with pytest.raises(smr.exceptions.ModelError):
            smr.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=b'{"crash": "x"}')
    for _ in range(refused):  # input_fn refuses the content type: the model answers 415
        with pytest.raises(smr.exceptions.ModelError):
            smr.invoke_endpoint(EndpointName=name, ContentType="text/plain", Body=b"hi")
    sent = ok + crashes + refused
    samples = _scrape(server)
    labels = {"endpoint": name, "variant": "AllTraffic"}
    assert _value(samples, "sagemaker_invocations_total", **labels) == sent
    assert _value(samples, "sagemaker_invocation_4xx_errors_total", **labels) == refused
    assert _value(samples, "sagemaker_invocation_5xx_errors_total", **labels) == crashes
    assert _value(samples, "sagemaker_invocation_model_errors_total", **labels) == crashes + refused
    assert _value(samples, "sagemaker_invocations_per_instance_total", **labels) == sent
    assert _value(samples, "sagemaker_model_latency_microseconds_count", **labels) == sent
    assert _value(samples, "sagemaker_model_latency_microseconds_sum", **labels) >= ok * 10_000  # the sleeps
    assert _value(samples, "sagemaker_overhead_latency_microseconds_count", **labels) == sent
    fast = _value(samples, "sagemaker_model_latency_microseconds_bucket", le="5000", **labels)
    assert fast <= crashes + refused  # every sleeping request took over 10 ms
    assert _value(samples, "sagemaker_model_setup_time_microseconds_count", **labels) == 1
    assert _value(samples, "sagemaker_variant_instances", **labels) == 1
    assert _value(samples, "sagemaker_concurrent_requests_per_model", **labels) == 0

    deadline = time.monotonic() + 15  # CPU and memory are sampled every 5 s
    while "sagemaker_memory_utilization_percent" not in samples or not any(
        dict(k).get("endpoint") == name for k in samples["sagemaker_memory_utilization_percent"]
    ):
        assert time.monotonic() < deadline, "no MemoryUtilization for the instance"
        time.sleep(0.5)
        samples = _scrape(server)
    assert 0 < _value(samples, "sagemaker_memory_utilization_percent", **labels) < 100
    assert _value(samples, "sagemaker_cpu_utilization_percent", **labels) >= 0


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    with moorage_server(tmp_path / "state", env={"MOORAGE_METRICS": "0"}) as server:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{server.url}/metrics", timeout=10)
        assert info.value.code == 404
        assert json.loads(info.value.read())["__type"] == "UnknownOperationException"
