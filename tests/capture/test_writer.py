"""The capture writer: batches as objects per endpoint, variant and hour, its bound on memory, shutdown,
and writes to a real S3 store (SeaweedFS) and to disk."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from moorage.capture.config import CaptureSpec
from moorage.capture.records import Captured
from moorage.capture.settings import CaptureSettings
from moorage.capture.writer import CaptureWriter
from moorage.jobs.local_access import LocalAccess
from moorage.logs import EndpointLogs
from tests.support.seaweed import SeaweedS3

HOUR = 3600.0
AT = 1714564984.25  # 2024-05-01T12:03:04.250Z


def _spec(destination: str) -> CaptureSpec:
    return CaptureSpec.of(
        {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": destination,
            "CaptureOptions": [{"CaptureMode": "InputAndOutput"}],
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        }
    )


def _captured(spec: CaptureSpec, body: bytes, variant: str = "AllTraffic", at: float = AT) -> Captured:
    return Captured(spec, "ep", variant, at, body, b"text/csv", b"out:" + body, b"text/csv")


def _inputs(path: Path) -> list[str]:
    return [
        json.loads(line)["captureData"]["endpointInput"]["data"] for line in path.read_text().splitlines()
    ]


async def test_a_batch_is_one_object_per_endpoint_variant_and_hour(tmp_path: Path) -> None:
    spec = _spec(str(tmp_path))
    writer = CaptureWriter(CaptureSettings(flush_seconds=60))
    for body, variant, at in (
        (b"1", "A", AT),
        (b"2", "B", AT),
        (b"3", "A", AT + 1),
        (b"4", "A", AT + HOUR),
    ):
        writer.submit(_captured(spec, body, variant, at))

    await writer.flush()

    files = sorted(tmp_path.rglob("*.jsonl"))
    assert [str(p.relative_to(tmp_path).parent) for p in files] == [
        "ep/A/2024/05/01/12",
        "ep/A/2024/05/01/13",
        "ep/B/2024/05/01/12",
    ]
    assert [_inputs(p) for p in files] == [["1", "3"], ["4"], ["2"]]
    assert files[0].name.startswith("03-04-250-")
    assert (writer.written, writer.dropped, writer.waiting) == (4, 0, 0)
    await writer.close()


async def test_records_are_written_within_the_interval(tmp_path: Path) -> None:
    writer = CaptureWriter(CaptureSettings(flush_seconds=0.05))
    writer.start()
    writer.submit(_captured(_spec(str(tmp_path)), b"5", at=time.time()))
    deadline = time.monotonic() + 30
    while not list(tmp_path.rglob("*.jsonl")) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)

    [written] = tmp_path.rglob("*.jsonl")
    assert _inputs(written) == ["5"]
    await writer.close()


async def test_records_beyond_the_memory_bound_are_dropped_and_logged(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    spec = _spec(str(tmp_path / "capture"))
    # two records fit, a third does not
    limit = 2 * _captured(spec, b"aa").size + 1
    writer = CaptureWriter(CaptureSettings(flush_seconds=60, max_buffer_bytes=limit), logs)
    for body in (b"aa", b"bb", b"cc"):
        writer.submit(_captured(spec, body))

    await writer.flush()
    writer.submit(_captured(spec, b"dd"))  # room again once the batch is written
    await writer.close()

    assert (writer.written, writer.dropped) == (3, 1)
    assert sorted(d for p in (tmp_path / "capture").rglob("*.jsonl") for d in _inputs(p)) == [
        "aa",
        "bb",
        "dd",
    ]
    endpoint_log = logs.path("ep").read_text()
    assert "1 record(s) of variant AllTraffic were dropped" in endpoint_log
    assert "MOORAGE_CAPTURE_MAX_BUFFER_BYTES" in endpoint_log


async def test_many_tiny_records_are_bounded_too(tmp_path: Path) -> None:
    """Each waiting record costs memory of its own, so requests with empty bodies cannot pile up
    without limit while the destination is slow."""
    spec = _spec(str(tmp_path / "capture"))
    writer = CaptureWriter(CaptureSettings(flush_seconds=60, max_buffer_bytes=64 * 1024))
    for _ in range(10_000):
        writer.submit(Captured(spec, "ep", "AllTraffic", AT, b"", None, b"", None))

    assert 0 < writer.waiting < 1_000
    assert writer.waiting + writer.dropped == 10_000


async def test_close_writes_what_waits_and_later_answers_are_dropped(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    writer = CaptureWriter(CaptureSettings(flush_seconds=3600), logs)
    writer.start()
    spec = _spec(str(tmp_path / "capture"))
    for n in range(50):
        writer.submit(_captured(spec, str(n).encode()))

    await writer.close()
    for _ in range(3):
        writer.submit(_captured(spec, b"late"))

    [written] = (tmp_path / "capture").rglob("*.jsonl")
    assert _inputs(written) == [str(n) for n in range(50)]
    assert (writer.written, writer.dropped) == (50, 3)
    # said once per variant, not once per late record
    assert logs.path("ep").read_text().count("after the server stopped writing captured data") == 1


async def test_s3_destination(s3_env: SeaweedS3, s3_bucket: str) -> None:
    writer = CaptureWriter(CaptureSettings(flush_seconds=60))
    writer.submit(_captured(_spec(f"s3://{s3_bucket}/capture/"), b"7"))

    await writer.close()

    s3: Any = s3_env.client()
    [item] = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert item["Key"].startswith("capture/ep/AllTraffic/2024/05/01/12/03-04-250-")
    lines = s3.get_object(Bucket=s3_bucket, Key=item["Key"])["Body"].read().decode().splitlines()
    assert [json.loads(line)["captureData"]["endpointOutput"]["data"] for line in lines] == ["out:7"]


async def test_a_destination_that_refuses_the_write_is_logged_and_its_records_dropped(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    (tmp_path / "a-file").write_text("not a folder")
    writer = CaptureWriter(CaptureSettings(flush_seconds=60), logs)
    writer.submit(_captured(_spec(str(tmp_path / "a-file" / "capture")), b"8"))
    writer.submit(_captured(_spec(str(tmp_path / "fine")), b"9"))

    await writer.close()

    assert (writer.written, writer.dropped) == (1, 1)
    assert [_inputs(p) for p in (tmp_path / "fine").rglob("*.jsonl")] == [["9"]]
    message = logs.path("ep").read_text()
    assert "1 record(s) of variant AllTraffic could not be written" in message
    assert "Not a directory" in message and "they are dropped" in message


async def test_signed_servers_write_only_below_the_local_data_root(tmp_path: Path) -> None:
    logs = EndpointLogs(tmp_path / "logs")
    root = tmp_path / "allowed"
    writer = CaptureWriter(CaptureSettings(flush_seconds=60), logs, LocalAccess(True, str(root)))
    writer.submit(_captured(_spec(str(root / "capture")), b"in"))
    writer.submit(_captured(_spec(str(tmp_path / "elsewhere")), b"out"))

    await writer.close()

    assert [_inputs(p) for p in root.rglob("*.jsonl")] == [["in"]]
    assert not (tmp_path / "elsewhere").exists()
    assert "--local-data-root" in logs.path("ep").read_text()
