"""The capture tap on the invocation path: what is sampled, what is captured, and the same tap rebuilt on
another server from what the reconciling one publishes."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from time import perf_counter
from typing import Any, cast

import pytest

from moorage.api.errors import ModelError
from moorage.capture.settings import CaptureSettings
from moorage.capture.taps import CaptureTap, capture_answer, capture_tap
from moorage.capture.writer import CaptureWriter, current_writer
from moorage.dataplane.connection import WorkerClient, WorkerResponse
from moorage.dataplane.invoke import Invocation, InvocationResult, invoke
from moorage.dataplane.route_sync import snapshot_of
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.taps import TAP_KINDS, Taps
from tests.dataplane.servers import Request, TinyServer, response

LOG_STREAM = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/sagemaker/Endpoints/ep"
NO_CONTEXT = cast(Any, None)


def _config(destination: Path, percentage: int = 100, **more: Any) -> dict[str, Any]:
    return {
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": percentage,
            "DestinationS3Uri": str(destination),
            "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
            **more,
        }
    }


def _records(root: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line) for path in sorted(root.rglob("*.jsonl")) for line in path.read_text().splitlines()
    ]


@pytest.fixture
async def writer() -> AsyncIterator[CaptureWriter]:
    capture = CaptureWriter(CaptureSettings(flush_seconds=60))  # written by close() only
    capture.start()
    yield capture
    await capture.close()


async def _answer(request: Request) -> Any:
    if request.body == b'{"fail": true}':
        return response(500, b"model failed")
    return response(200, b'{"echo": %s}' % request.body, ((b"content-type", b"application/json"),))


async def test_answered_requests_are_captured_and_failed_ones_are_not(
    writer: CaptureWriter, tmp_path: Path
) -> None:
    destination = tmp_path / "capture"
    async with TinyServer(str(tmp_path / "w.sock"), _answer):
        client = WorkerClient(str(tmp_path / "w.sock"))
        variant = VariantRoute("AllTraffic", 1.0, 10.0, workers=[WorkerRoute(client, "i-1", 0, lambda: None)])
        variant.tap = capture_tap("ep", variant, _config(destination), NO_CONTEXT)
        table = RoutingTable()
        table.install(EndpointRoute("ep", [variant], LOG_STREAM))
        ok = Invocation("ep", b'{"x": 1}', b"application/json", inference_id=b"id-1")
        result = await invoke(table, ok, "123456789012", perf_counter())
        with pytest.raises(ModelError):
            await invoke(table, Invocation("ep", b'{"fail": true}', b"application/json"), "1", perf_counter())
        client.close()
    await writer.close()

    assert result.response.body == b'{"echo": {"x": 1}}'
    [record] = _records(destination)
    assert record["captureData"]["endpointInput"]["data"] == '{"x": 1}'
    assert record["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": '{"echo": {"x": 1}}',
        "encoding": "JSON",
    }
    assert record["eventMetadata"]["inferenceId"] == "id-1"
    assert writer.written == 1 and writer.dropped == 0
    assert [p.relative_to(destination).parts[:2] for p in destination.rglob("*.jsonl")] == [
        ("ep", "AllTraffic")
    ]


def _done(loop: asyncio.AbstractEventLoop, body: bytes = b"{}") -> asyncio.Future[InvocationResult]:
    future: asyncio.Future[InvocationResult] = loop.create_future()
    future.set_result(InvocationResult("AllTraffic", WorkerResponse(200, [], body)))
    return future


async def test_sampling_draws_the_configured_share(writer: CaptureWriter, tmp_path: Path) -> None:
    config = _config(tmp_path, percentage=30)["DataCaptureConfig"]
    tap = CaptureTap("ep", "AllTraffic", config, writer, rng=random.Random(7))
    loop = asyncio.get_running_loop()
    route = EndpointRoute("ep", [], LOG_STREAM)
    variant = VariantRoute("AllTraffic", 1.0, 10.0)

    for _ in range(10_000):
        tap.observe(route, variant, Invocation("ep", b"{}"), _done(loop), RoutingTable())

    assert 2_800 <= len(writer.pending) <= 3_200
    everything = CaptureTap("ep", "AllTraffic", {**config, "InitialSamplingPercentage": 100}, writer)
    before = len(writer.pending)
    for _ in range(100):
        everything.observe(route, variant, Invocation("ep", b"{}"), _done(loop), RoutingTable())
    assert len(writer.pending) - before == 100


async def test_no_tap_when_capture_is_off_samples_nothing_or_has_no_writer(
    writer: CaptureWriter, tmp_path: Path
) -> None:
    variant = VariantRoute("AllTraffic", 1.0, 10.0)
    off = _config(tmp_path, EnableCapture=False)

    assert capture_tap("ep", variant, {}, NO_CONTEXT) is None
    assert capture_tap("ep", variant, off, NO_CONTEXT) is None
    assert capture_tap("ep", variant, _config(tmp_path, percentage=0), NO_CONTEXT) is None
    assert isinstance(capture_tap("ep", variant, _config(tmp_path, percentage=1), NO_CONTEXT), CaptureTap)
    await writer.close()
    assert current_writer() is None
    assert capture_tap("ep", variant, _config(tmp_path), NO_CONTEXT) is None


async def test_another_server_rebuilds_the_tap_from_the_published_route(
    writer: CaptureWriter, tmp_path: Path
) -> None:
    variant = VariantRoute("AllTraffic", 1.0, 10.0)
    other = CaptureTap("ep", "AllTraffic", _config(tmp_path)["DataCaptureConfig"], writer)
    variant.tap = Taps([other])
    route = EndpointRoute("ep", [variant], LOG_STREAM)
    kind, settings = json.loads(json.dumps(snapshot_of(route)))["variants"][0]["tap"]

    rebuilt = TAP_KINDS[kind](settings, route)

    assert isinstance(rebuilt, Taps)
    [tap] = rebuilt.taps
    assert isinstance(tap, CaptureTap)
    assert (tap.endpoint, tap.variant, tap.spec, tap.writer) == ("ep", "AllTraffic", other.spec, writer)


async def test_asynchronous_answers_are_captured_through_the_variants_tap(
    writer: CaptureWriter, tmp_path: Path
) -> None:
    variant = VariantRoute("AllTraffic", 1.0, 10.0)
    capture = CaptureTap("ep", "AllTraffic", _config(tmp_path / "out")["DataCaptureConfig"], writer)
    variant.tap = Taps([cast(Any, _Other()), capture])
    answer = WorkerResponse(200, [(b"Content-Type", b"application/json")], b'{"y": 2}')

    capture_answer(variant, b'{"y": 1}', "application/json", answer, "inference-7", "trace=1")
    capture_answer(VariantRoute("Plain", 1.0, 10.0), b"{}", None, answer)  # no tap: nothing
    await writer.close()

    [record] = _records(tmp_path / "out")
    assert record["captureData"]["endpointInput"]["data"] == '{"y": 1}'
    assert record["captureData"]["endpointOutput"]["data"] == '{"y": 2}'
    assert record["eventMetadata"]["inferenceId"] == "inference-7"
    assert record["eventMetadata"]["customAttributes"] == ["trace=1"]


class _Other:
    kind = "other"

    def observe(self, *args: Any) -> None:
        raise AssertionError("the asynchronous path calls only the capture tap")

    def settings(self) -> dict[str, Any]:
        return {}
