"""Writing captured data: batches as objects per endpoint, variant and hour (the capture process's
Batches, in this process), and the server's writer with its real capture process: the interval, the
bound on memory, shutdown, and a capture process that dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from moorage.capture.batches import Batches
from moorage.capture.config import CaptureSpec
from moorage.capture.records import Record, Target
from moorage.capture.settings import CaptureSettings
from moorage.capture.taps import CaptureTap
from moorage.capture.writer import RECORD_OVERHEAD_BYTES, CaptureWriter
from moorage.dataplane.connection import WorkerResponse
from moorage.dataplane.invoke import Invocation, InvocationResult
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute
from moorage.jobs.local_access import LocalAccess
from moorage.logs import EndpointLogs
from tests.support.seaweed import SeaweedS3

HOUR = 3600.0
AT = 1714564984.25  # 2024-05-01T12:03:04.250Z
LOG_STREAM = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/sagemaker/Endpoints/ep"


def _config(destination: str) -> dict[str, Any]:
    return {
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
    }


def _target(destination: str, variant: str = "AllTraffic") -> Target:
    spec = CaptureSpec.of(_config(destination))
    return Target(destination, "ep", variant, spec.csv_types, spec.json_types)


def _record(number: int, body: bytes, at: float = AT) -> Record:
    return (number, at, body, b"text/csv", b"out:" + body, [(b"content-type", b"text/csv")], None, None)


def _inputs(path: Path) -> list[str]:
    return [
        json.loads(line)["captureData"]["endpointInput"]["data"] for line in path.read_text().splitlines()
    ]


def _all_inputs(root: Path) -> list[str]:
    return sorted(d for p in root.rglob("*.jsonl") for d in _inputs(p))


# ------------------------------------------------------------------- the capture process's batches
def test_a_batch_is_one_object_per_endpoint_variant_and_hour(tmp_path: Path) -> None:
    batches = Batches(CaptureSettings(flush_seconds=60))
    batches.target(1, _target(str(tmp_path), "A"))
    batches.target(2, _target(str(tmp_path), "B"))
    batches.add([_record(1, b"1"), _record(2, b"2"), _record(1, b"3", AT + 1)], 300)
    batches.add([_record(1, b"4", AT + HOUR)], 100)

    outcome = batches.write()

    files = sorted(tmp_path.rglob("*.jsonl"))
    assert [str(p.relative_to(tmp_path).parent) for p in files] == [
        "ep/A/2024/05/01/12",
        "ep/A/2024/05/01/13",
        "ep/B/2024/05/01/12",
    ]
    assert [_inputs(p) for p in files] == [["1", "3"], ["4"], ["2"]]
    assert files[0].name.startswith("03-04-250-")
    assert (outcome.written, outcome.dropped, outcome.released) == (4, 0, 400)
    assert (batches.waiting, batches.weight) == (0, 0)


def test_s3_destination(s3_env: SeaweedS3, s3_bucket: str) -> None:
    batches = Batches(CaptureSettings(flush_seconds=60))
    batches.target(1, _target(f"s3://{s3_bucket}/capture/"))
    batches.add([_record(1, b"7")], 1)

    assert batches.write(final=True).written == 1

    s3: Any = s3_env.client()
    [item] = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert item["Key"].startswith("capture/ep/AllTraffic/2024/05/01/12/03-04-250-")
    lines = s3.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read().decode().splitlines()
    assert [json.loads(line)["captureData"]["endpointOutput"]["data"] for line in lines] == ["out:7"]


def test_a_destination_that_refuses_the_write_is_logged_and_its_records_dropped(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    (tmp_path / "a-file").write_text("not a folder")
    batches = Batches(CaptureSettings(flush_seconds=60), logs)
    batches.target(1, _target(str(tmp_path / "a-file" / "capture")))
    batches.target(2, _target(str(tmp_path / "fine")))
    batches.add([_record(1, b"8"), _record(2, b"9")], 2)

    outcome = batches.write()

    assert (outcome.written, outcome.dropped, outcome.released) == (1, 1, 2)
    assert [_inputs(p) for p in (tmp_path / "fine").rglob("*.jsonl")] == [["9"]]
    message = logs.path("ep").read_text()
    assert "1 record(s) of variant AllTraffic could not be written" in message
    assert "Not a directory" in message and "they are dropped" in message


def test_signed_servers_write_only_below_the_local_data_root(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    root = tmp_path / "allowed"
    batches = Batches(CaptureSettings(flush_seconds=60), logs, LocalAccess(True, str(root)))
    batches.target(1, _target(str(root / "capture")))
    batches.target(2, _target(str(tmp_path / "elsewhere")))
    batches.add([_record(1, b"in"), _record(2, b"out")], 2)

    batches.write()

    assert [_inputs(p) for p in root.rglob("*.jsonl")] == [["in"]]
    assert not (tmp_path / "elsewhere").exists()
    assert "--local-data-root" in logs.path("ep").read_text()


# ------------------------------------------------------------- the server's writer and its process
class _Requests:
    """Sampled requests as the invocation path hands them to a capture tap."""

    def __init__(self, writer: CaptureWriter, destination: Path, variant: str = "AllTraffic") -> None:
        self.tap = CaptureTap("ep", variant, _config(str(destination)), writer)
        self.route = EndpointRoute("ep", [], LOG_STREAM)
        self.variant = VariantRoute(variant, 1.0, 10.0)

    def send(self, body: bytes) -> asyncio.Future[InvocationResult]:
        future: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()
        self.tap.observe(
            self.route, self.variant, Invocation("ep", body, b"text/csv"), future, RoutingTable()
        )
        return future

    def answered(self, *bodies: bytes) -> None:
        for body in bodies:
            self.send(body).set_result(
                InvocationResult("AllTraffic", WorkerResponse(200, [(b"content-type", b"text/csv")], b"ok"))
            )


async def _until(condition: Any) -> None:
    deadline = time.monotonic() + 30
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_records_are_written_within_the_interval(tmp_path: Path) -> None:
    writer = CaptureWriter(CaptureSettings(flush_seconds=0.05))
    writer.start()
    _Requests(writer, tmp_path).answered(b"5")
    await _until(lambda: list(tmp_path.rglob("*.jsonl")))

    [written] = tmp_path.rglob("*.jsonl")
    assert _inputs(written) == ["5"]
    await writer.close()
    assert (writer.written, writer.dropped, writer.held) == (1, 0, 0)


async def test_records_beyond_the_memory_bound_are_dropped_and_logged(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    writer = CaptureWriter(CaptureSettings(flush_seconds=60), logs)
    requests = _Requests(writer, tmp_path / "capture")
    requests.answered(b"aa")
    writer.harvest()
    one = writer.held  # one record's frame: its bytes and the tap's description
    await writer.flush()
    writer.settings = CaptureSettings(flush_seconds=60, max_buffer_bytes=2 * one)
    requests.answered(b"bb", b"cc", b"dd")  # two fit, the third does not

    writer.harvest()
    await writer.flush()
    requests.answered(b"ee")  # room again once the batch is written
    await writer.close()

    assert (writer.written, writer.dropped) == (4, 1)
    assert _all_inputs(tmp_path / "capture") == ["aa", "bb", "cc", "ee"]
    endpoint_log = logs.path("ep").read_text()
    assert "1 record(s) of variant AllTraffic were dropped" in endpoint_log
    assert "MOORAGE_CAPTURE_MAX_BUFFER_BYTES" in endpoint_log


async def test_many_tiny_records_are_bounded_too(tmp_path: Path) -> None:
    """Each waiting record costs memory of its own, so requests with empty bodies cannot pile up
    without limit while the destination is slow."""
    writer = CaptureWriter(CaptureSettings(flush_seconds=60, max_buffer_bytes=64 * 1024))
    _Requests(writer, tmp_path).answered(*[b""] * 10_000)

    writer.harvest()

    kept = 10_000 - writer.dropped
    assert 0 < kept <= 64 * 1024 // RECORD_OVERHEAD_BYTES
    assert writer.held <= 64 * 1024
    await writer.close()
    assert writer.written == kept


async def test_close_writes_what_waits_and_later_answers_are_dropped(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    writer = CaptureWriter(CaptureSettings(flush_seconds=3600), logs)
    writer.start()
    requests = _Requests(writer, tmp_path / "capture")
    requests.answered(*[str(n).encode() for n in range(50)])
    running = requests.send(b"still running")  # answered while the shutdown waits for it
    asyncio.get_running_loop().call_later(
        0.2, running.set_result, InvocationResult("A", WorkerResponse(200, [], b""))
    )

    await writer.close()
    requests.answered(b"late", b"late", b"late")

    [written] = (tmp_path / "capture").rglob("*.jsonl")
    assert _inputs(written) == [*(str(n) for n in range(50)), "still running"]
    assert (writer.written, writer.dropped) == (51, 3)
    # said once per variant, not once per late record
    assert logs.path("ep").read_text().count("after the server stopped writing captured data") == 1


async def test_a_capture_process_that_dies_is_started_again(tmp_path: Path) -> None:
    writer = CaptureWriter(CaptureSettings(flush_seconds=3600))
    writer.start()
    requests = _Requests(writer, tmp_path)
    requests.answered(b"lost")
    writer.harvest()
    assert writer._channel is not None
    os.kill(writer._channel.process.pid, signal.SIGKILL)
    await _until(lambda: writer.dropped)

    requests.answered(b"kept")
    await writer.close()

    assert _all_inputs(tmp_path) == ["kept"]
    assert (writer.written, writer.dropped) == (1, 1)


async def test_a_record_larger_than_the_pipe_arrives_whole(tmp_path: Path) -> None:
    """The pipe to the capture process takes at most a MiB at once; the rest of a frame is written as it
    drains, without the event loop waiting."""
    writer = CaptureWriter(CaptureSettings(flush_seconds=3600))
    writer.start()
    big = b"x" * (3 * 1024 * 1024)
    _Requests(writer, tmp_path).answered(big, b"after")

    await writer.close()

    assert _all_inputs(tmp_path) == ["after", big.decode()]
