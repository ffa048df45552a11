"""Invariants of batch transform's record handling over generated data (bounded and reproducible):
framing round trips, packing that is complete, ordered, within the limit and greedy, and slices that
include their end."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage.jobs.transform import TransformSettings, assemble, requests_for
from moorage.jobs.transform.filters import parse_path, select
from moorage.jobs.transform.framing import (
    frame_recordio,
    frame_tfrecord,
    split_recordio,
    split_tfrecord,
)
from tests.support.transform import settings as transform_settings

MAGIC = b"\x0a\x23\xd7\xce"
BOUNDED = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Payloads rich in magic words, at aligned and unaligned places.
payloads = st.lists(st.sampled_from([b"", b"a", b"bc", b"def", b"ghij", MAGIC, b"\x00"]), max_size=8).map(
    b"".join
)
lines = st.text(alphabet="abc,123 \"'\r", min_size=1, max_size=12).filter(lambda s: s.strip("\r ") != "")


def job(**changes: Any) -> TransformSettings:
    """Settings with no payload limit and no content types, but for `changes`."""
    return transform_settings(**{"max_payload_bytes": 0, "content_type": None, "accept": None, **changes})


@BOUNDED
@given(st.lists(payloads, max_size=6))
def test_recordio_round_trip(items: list[bytes]) -> None:
    data = b"".join(frame_recordio(item) for item in items)
    records = split_recordio(data)
    assert [record.payload for record in records] == items
    assert b"".join(record.framed for record in records) == data
    assert all(len(record.framed) % 4 == 0 for record in records)


@BOUNDED
@given(st.lists(payloads, max_size=6))
def test_tfrecord_round_trip(items: list[bytes]) -> None:
    data = b"".join(frame_tfrecord(item) for item in items)
    records = split_tfrecord(data)
    assert [record.payload for record in records] == items
    assert b"".join(record.framed for record in records) == data


@BOUNDED
@given(st.lists(lines, min_size=1, max_size=20), st.integers(min_value=0, max_value=40), st.booleans())
def test_multi_record_packing_is_complete_ordered_bounded_and_greedy(
    texts: list[str], extra: int, final_newline: bool
) -> None:
    data = "\n".join(texts).encode() + (b"\n" if final_newline else b"")
    records, _ = requests_for(data, job())
    limit = max(len(record) for record in records) + extra
    records, requests = requests_for(data, job(max_payload_bytes=limit))
    assert b"".join(records) == data
    position = 0
    for index, request in enumerate(requests):
        assert request.first == position and request.count >= 1
        assert request.body == b"".join(records[position : position + request.count])
        assert len(request.body) <= limit
        position += request.count
        if index + 1 < len(requests):
            # The next record did not fit: MultiRecord packs as many as it can.
            assert len(request.body) + len(records[position]) > limit
    assert position == len(records)


@BOUNDED
@given(st.lists(lines, min_size=1, max_size=20), st.sampled_from(["SingleRecord", "MultiRecord"]))
def test_line_assembly_keeps_one_line_per_response(texts: list[str], strategy: str) -> None:
    data = "\n".join(texts).encode()
    records, requests = requests_for(data, job(batch_strategy=strategy, max_payload_bytes=16))
    responses = [b"%d" % request.first for request in requests]
    out = assemble(records, requests, responses, job())
    assert out.split(b"\n")[:-1] == responses


@BOUNDED
@given(
    st.lists(st.integers(), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=14),
    st.integers(min_value=0, max_value=14),
)
def test_slices_include_their_end(values: list[int], start: int, end: int) -> None:
    assert select(parse_path(f"$[{start}:{end}]"), values) == values[start : end + 1]
    assert select(parse_path(f"$[{start}:]"), values) == values[start:]
    assert select(parse_path(f"$[:{end}]"), values) == values[: end + 1]


@BOUNDED
@given(
    st.lists(
        st.lists(st.text(alphabet='ab,"x 1', max_size=5), min_size=1, max_size=4),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(["SingleRecord", "MultiRecord"]),
)
def test_csv_join_then_output_filter_gives_back_the_input_columns(
    rows: list[list[str]], strategy: str
) -> None:
    """Join each row with one predicted column, keep every column but the prediction: the CSV rows come
    back as they were parsed (quoting may be normalised, values may not change)."""
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    data = buffer.getvalue().encode()
    settings_ = job(
        batch_strategy=strategy,
        content_type="text/csv",
        accept="text/csv",
        join_source="Input",
        output_filter="$[:-2]",
    )
    records, requests = requests_for(data, settings_)
    responses = [b"p\n" * request.count for request in requests]
    out = assemble(records, requests, responses, settings_)
    assert list(csv.reader(io.StringIO(out.decode()))) == rows
