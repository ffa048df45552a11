"""Batch transform records: split, filter, pack, then split responses, join, filter and assemble.

Every expected body is written out by hand; nothing here is computed by the code under test."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from moorage.jobs.transform import (
    ManifestError,
    RecordError,
    Request,
    TransformSettings,
    assemble,
    check_join,
    check_settings,
    read_manifest,
    requests_for,
)
from moorage.jobs.transform.framing import frame_recordio, frame_tfrecord, masked_crc32c, split_recordio
from moorage.jobs.transform.manifest import manifest_entries
from tests.support.transform import MB, settings


def bodies(requests: list[Request]) -> list[tuple[bytes, int, int]]:
    return [(r.body, r.first, r.count) for r in requests]


# --- settings -----------------------------------------------------------------------------------


def test_from_job_reads_the_members_and_defaults() -> None:
    job = {
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
            "ContentType": "text/csv",
            "CompressionType": "Gzip",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://b/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        "DataProcessing": {"InputFilter": "$[1:]", "OutputFilter": "$[0,-1]", "JoinSource": "Input"},
    }
    assert TransformSettings.from_job(job, 2, "SingleRecord") == TransformSettings(
        split_type="Line",
        batch_strategy="SingleRecord",
        max_payload_bytes=2097152,
        compression="Gzip",
        assemble_with="Line",
        content_type="text/csv",
        accept="text/csv",
        input_filter="$[1:]",
        output_filter="$[0,-1]",
        join_source="Input",
    )
    bare = {"TransformInput": {"DataSource": {}}, "TransformOutput": {"S3OutputPath": "s3://b/o/"}}
    assert TransformSettings.from_job(bare, 0, "MultiRecord") == TransformSettings(
        split_type="None",
        batch_strategy="MultiRecord",
        max_payload_bytes=0,
        compression="None",
        assemble_with="None",
        content_type=None,
        accept=None,
        input_filter="$",
        output_filter="$",
        join_source="None",
    )


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"split_type": "Lines"}, "TransformInput.SplitType must be one of None, Line, RecordIO, TFRecord"),
        ({"batch_strategy": "Multi"}, "BatchStrategy must be one of"),
        ({"compression": "Zip"}, "CompressionType must be one of None, Gzip"),
        ({"assemble_with": "RecordIO"}, "AssembleWith must be one of None, Line"),
        ({"max_payload_bytes": -1}, "MaxPayloadInMB must not be negative"),
        ({"input_filter": "id"}, "DataProcessing.InputFilter: JSONPath 'id' must start with '$'"),
        ({"output_filter": "$[1:2:3]"}, "DataProcessing.OutputFilter: JSONPath '$[1:2:3]'"),
        ({"input_filter": "$.id"}, "a CSV row is an array of columns"),
        ({"output_filter": "$['a']"}, "a CSV row is an array of columns"),
        ({"content_type": None, "input_filter": "$[1:]"}, "needs TransformInput.ContentType text/csv"),
        ({"content_type": "image/png", "input_filter": "$[1:]"}, "not 'image/png'"),
        (
            {"accept": "application/x-recordio-protobuf", "output_filter": "$[0]"},
            "DataProcessing.OutputFilter '$[0]' needs TransformOutput.Accept",
        ),
        (
            {"split_type": "RecordIO", "content_type": "application/json", "input_filter": "$.a"},
            "applies to CSV and JSON records, not to SplitType RecordIO",
        ),
        ({"join_source": "Output"}, "JoinSource must be Input or None"),
    ],
)
def test_check_settings_names_the_problem(changes: dict[str, Any], fragment: str) -> None:
    problem = check_settings(settings(**changes))
    assert problem is not None
    assert fragment in problem
    with pytest.raises(RecordError) as caught:
        requests_for(b"1,2\n", settings(**changes))
    assert fragment in str(caught.value)


def test_output_filter_uses_content_type_when_accept_is_unset() -> None:
    assert check_settings(settings(accept=None, output_filter="$[0]")) is None


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"assemble_with": "None"}, "AssembleWith to match TransformInput.SplitType"),
        ({"split_type": "None"}, "they are Line and None"),
        ({"split_type": "RecordIO", "assemble_with": "None"}, "they are None and RecordIO"),
        ({"accept": "application/json"}, "Accept to equal TransformInput.ContentType"),
        ({"accept": None}, "they are None and 'text/csv'"),
        ({"content_type": "image/png", "accept": "image/png"}, "not 'image/png'"),
        ({"content_type": None, "accept": None}, "not None"),
    ],
)
def test_check_join(changes: dict[str, Any], fragment: str) -> None:
    problem = check_join(settings(join_source="Input", **changes))
    assert problem is not None
    assert fragment in problem


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"split_type": "None", "assemble_with": "None"},
        {"content_type": "application/json", "accept": "application/json"},
        {"content_type": "application/jsonlines", "accept": "application/jsonlines"},
        {"content_type": "text/csv", "accept": "text/csv; charset=utf-8"},
    ],
)
def test_joins_that_are_allowed(changes: dict[str, Any]) -> None:
    assert check_join(settings(join_source="Input", **changes)) is None
    assert check_join(settings(**changes)) is None


# --- splitting and packing ----------------------------------------------------------------------

CSV = b"1,2,3\n4,5,6\n7,8,9\n"


def test_line_multi_record_packs_everything_that_fits() -> None:
    records, requests = requests_for(CSV, settings())
    assert records == [b"1,2,3\n", b"4,5,6\n", b"7,8,9\n"]
    assert bodies(requests) == [(b"1,2,3\n4,5,6\n7,8,9\n", 0, 3)]


def test_line_single_record_sends_each_line_with_its_newline() -> None:
    _, requests = requests_for(CSV, settings(batch_strategy="SingleRecord"))
    assert bodies(requests) == [(b"1,2,3\n", 0, 1), (b"4,5,6\n", 1, 1), (b"7,8,9\n", 2, 1)]


def test_line_split_keeps_crlf_and_a_last_line_without_newline_and_skips_blank_lines() -> None:
    records, requests = requests_for(b"a,1\r\n\r\nb,2\n\n\nc,3", settings())
    assert records == [b"a,1\r\n", b"b,2\n", b"c,3"]
    assert bodies(requests) == [(b"a,1\r\nb,2\nc,3", 0, 3)]


def test_line_split_of_an_empty_object_has_no_requests() -> None:
    assert requests_for(b"", settings()) == ([], [])
    assert requests_for(b"\n\n", settings()) == ([], [])
    assert requests_for(b"", settings(split_type="None")) == ([], [])


def test_multi_record_starts_a_new_request_at_the_payload_limit() -> None:
    # 6-byte records under a 13-byte limit: two per request (12 bytes), the third starts the next.
    _, requests = requests_for(CSV + b"10,11\n", settings(max_payload_bytes=13))
    assert bodies(requests) == [(b"1,2,3\n4,5,6\n", 0, 2), (b"7,8,9\n10,11\n", 2, 2)]
    # Exactly at the limit still fits.
    _, requests = requests_for(CSV, settings(max_payload_bytes=12))
    assert bodies(requests) == [(b"1,2,3\n4,5,6\n", 0, 2), (b"7,8,9\n", 2, 1)]


def test_zero_max_payload_means_no_limit() -> None:
    big = b"x" * (7 * MB) + b"\n"
    _, requests = requests_for(big + b"y\n", settings(max_payload_bytes=0))
    assert [(r.first, r.count, len(r.body)) for r in requests] == [(0, 2, 7 * MB + 3)]


def test_a_record_over_the_limit_names_it() -> None:
    with pytest.raises(RecordError) as caught:
        requests_for(b"ab\nabcdef\nab\n", settings(max_payload_bytes=5))
    assert str(caught.value) == (
        "record 2: the record is 7 bytes, over MaxPayloadInMB (0 MB = 5 bytes); raise MaxPayloadInMB or "
        "split the data into smaller records (SplitType)"
    )
    assert caught.value.record == 2
    with pytest.raises(RecordError, match="record 2: the record is 7 bytes"):
        requests_for(b"ab\nabcdef\nab\n", settings(max_payload_bytes=5, batch_strategy="SingleRecord"))


def test_split_none_sends_the_whole_object() -> None:
    for strategy in ("MultiRecord", "SingleRecord"):
        records, requests = requests_for(CSV, settings(split_type="None", batch_strategy=strategy))
        assert records == [CSV]
        assert bodies(requests) == [(CSV, 0, 1)]


def test_split_none_over_the_limit_is_an_error() -> None:
    with pytest.raises(RecordError) as caught:
        requests_for(b"x" * (MB + 1), settings(split_type="None", max_payload_bytes=MB))
    assert str(caught.value).startswith("record 1: the object is 1048577 bytes, over MaxPayloadInMB (1 MB")


def test_gzip_is_decompressed_first() -> None:
    packed = gzip.compress(b"1,2\n3,4\n")
    records, requests = requests_for(packed, settings(compression="Gzip", batch_strategy="SingleRecord"))
    assert records == [b"1,2\n", b"3,4\n"]
    assert bodies(requests) == [(b"1,2\n", 0, 1), (b"3,4\n", 1, 1)]
    # The payload limit applies to what is sent, after decompression.
    with pytest.raises(RecordError, match="record 1: the object is 8 bytes"):
        requests_for(packed, settings(compression="Gzip", split_type="None", max_payload_bytes=7))
    # Several gzip members are one stream, as gunzip reads them.
    two = gzip.compress(b"a\n") + gzip.compress(b"b\n")
    assert requests_for(two, settings(compression="Gzip"))[0] == [b"a\n", b"b\n"]


def test_bad_gzip() -> None:
    with pytest.raises(RecordError, match=r"^the object is not valid gzip \(CompressionType is Gzip\)"):
        requests_for(b"1,2,3\n", settings(compression="Gzip"))
    with pytest.raises(RecordError, match="not valid gzip"):
        requests_for(gzip.compress(b"1,2,3\n")[:-6], settings(compression="Gzip"))


# --- RecordIO and TFRecord ----------------------------------------------------------------------

MAGIC = b"\x0a\x23\xd7\xce"
RIO_ABC = MAGIC + b"\x03\x00\x00\x00abc\x00"
RIO_ABCD = MAGIC + b"\x04\x00\x00\x00abcd"
RIO_EMPTY = MAGIC + b"\x00\x00\x00\x00"
RIO_HELLO = MAGIC + b"\x05\x00\x00\x00hello\x00\x00\x00"
# "wxyz" + magic + "q": cut at the aligned magic into a first part (flag 1) and a last part (flag 3).
RIO_SPLIT = MAGIC + b"\x04\x00\x00\x20wxyz" + MAGIC + b"\x01\x00\x00\x60q\x00\x00\x00"
# "wxyz" + magic + "1234" + magic: first (1), middle (2) and an empty last part (3).
RIO_THREE = MAGIC + b"\x04\x00\x00\x20wxyz" + MAGIC + b"\x04\x00\x00\x401234" + MAGIC + b"\x00\x00\x00\x60"


def test_recordio_frames_by_hand() -> None:
    assert frame_recordio(b"abc") == RIO_ABC
    assert frame_recordio(b"abcd") == RIO_ABCD
    assert frame_recordio(b"") == RIO_EMPTY
    assert frame_recordio(b"wxyz" + MAGIC + b"q") == RIO_SPLIT
    assert frame_recordio(b"wxyz" + MAGIC + b"1234" + MAGIC) == RIO_THREE
    # A magic word that is not 4-byte aligned is data, not a cut.
    assert frame_recordio(b"w" + MAGIC) == MAGIC + b"\x05\x00\x00\x00w" + MAGIC + b"\x00\x00\x00"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"a",
        b"abcd",
        b"\x00" * 9,
        MAGIC,
        MAGIC + MAGIC,
        b"wxyz" + MAGIC + b"q",
        b"ab" + MAGIC + b"cd",
        bytes(range(256)),
    ],
)
def test_recordio_round_trip(payload: bytes) -> None:
    [record] = split_recordio(frame_recordio(payload))
    assert record.payload == payload
    assert record.framed == frame_recordio(payload)


def test_recordio_multi_record_keeps_the_padding() -> None:
    data = RIO_ABC + RIO_SPLIT + RIO_ABCD
    records, requests = requests_for(
        data, settings(split_type="RecordIO", content_type="application/x-recordio")
    )
    assert records == [RIO_ABC, RIO_SPLIT, RIO_ABCD]
    assert bodies(requests) == [(data, 0, 3)]
    # 12 + 24 = 36 bytes fit under 40; the 12-byte third record starts a new request.
    _, requests = requests_for(data, settings(split_type="RecordIO", max_payload_bytes=40))
    assert bodies(requests) == [(RIO_ABC + RIO_SPLIT, 0, 2), (RIO_ABCD, 2, 1)]


def test_recordio_single_record_strips_the_padding() -> None:
    data = RIO_ABC + RIO_SPLIT + RIO_THREE + RIO_EMPTY + RIO_HELLO
    _, requests = requests_for(data, settings(split_type="RecordIO", batch_strategy="SingleRecord"))
    assert bodies(requests) == [
        (b"abc", 0, 1),
        (b"wxyz" + MAGIC + b"q", 1, 1),
        (b"wxyz" + MAGIC + b"1234" + MAGIC, 2, 1),
        (b"", 3, 1),
        (b"hello", 4, 1),
    ]


def test_recordio_tolerates_missing_padding_at_the_end() -> None:
    _, requests = requests_for(
        MAGIC + b"\x03\x00\x00\x00abc", settings(split_type="RecordIO", batch_strategy="SingleRecord")
    )
    assert bodies(requests) == [(b"abc", 0, 1)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (RIO_ABC + b"\x0a\x23", "record 2: RecordIO header cut short at byte 12 (needs 8 bytes)"),
        (
            RIO_ABC + b"\x00\x00\x00\x00\x03\x00\x00\x00",
            "record 2: no RecordIO magic 0xced7230a at byte 12 (found 0x00000000)",
        ),
        (
            MAGIC + b"\x09\x00\x00\x00abc",
            "record 1: RecordIO record at byte 0 says 9 bytes; the object ends first",
        ),
        (
            MAGIC + b"\x01\x00\x00\x60q\x00\x00\x00",
            "record 1: RecordIO continuation flag 3 out of place at byte 0",
        ),
        (
            MAGIC + b"\x01\x00\x00\x80q\x00\x00\x00",
            "record 1: RecordIO continuation flag 4 out of place at byte 0",
        ),
        (
            RIO_ABC + MAGIC + b"\x04\x00\x00\x20wxyz",
            "record 2: the object ends inside a multi-part RecordIO record",
        ),
        (
            MAGIC + b"\x04\x00\x00\x20wxyz" + RIO_ABC,
            "record 1: RecordIO continuation flag 0 out of place at byte 12",
        ),
    ],
)
def test_bad_recordio(data: bytes, message: str) -> None:
    with pytest.raises(RecordError) as caught:
        requests_for(data, settings(split_type="RecordIO"))
    assert str(caught.value) == message


TF_ABC = b"\x03\x00\x00\x00\x00\x00\x00\x00\xb0\x99I\x0eabcnW\xf1!"
TF_EMPTY = b"\x00\x00\x00\x00\x00\x00\x00\x00)\x03\x98\x07\xd8\xea\x82\xa2"
TF_HELLO = b'\x0e\x00\x00\x00\x00\x00\x00\x00\xc5\xe5i?hello tfrecord\x9f[v"'


def test_tfrecord_frames_and_checksums_by_hand() -> None:
    assert masked_crc32c(b"") == 0xA282EAD8
    assert frame_tfrecord(b"abc") == TF_ABC
    assert frame_tfrecord(b"") == TF_EMPTY
    assert frame_tfrecord(b"hello tfrecord") == TF_HELLO


def test_tfrecord_single_and_multi_record() -> None:
    data = TF_ABC + TF_EMPTY + TF_HELLO
    _, requests = requests_for(data, settings(split_type="TFRecord", batch_strategy="SingleRecord"))
    assert bodies(requests) == [(b"abc", 0, 1), (b"", 1, 1), (b"hello tfrecord", 2, 1)]
    records, requests = requests_for(data, settings(split_type="TFRecord"))
    assert records == [TF_ABC, TF_EMPTY, TF_HELLO]
    assert bodies(requests) == [(data, 0, 3)]
    _, requests = requests_for(
        data, settings(split_type="TFRecord", max_payload_bytes=len(TF_ABC + TF_EMPTY))
    )
    assert bodies(requests) == [(TF_ABC + TF_EMPTY, 0, 2), (TF_HELLO, 2, 1)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (TF_ABC + b"\x01\x00", "record 2: TFRecord header cut short at byte 19 (needs 12 bytes)"),
        (
            b"\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00abc\x00\x00\x00\x00",
            "record 1: TFRecord length checksum does not match at byte 0: not a TFRecord file?",
        ),
        (TF_ABC[:-1], "record 1: TFRecord record at byte 0 says 3 bytes; the object ends first"),
        (CSV, "record 1: TFRecord length checksum does not match at byte 0: not a TFRecord file?"),
    ],
)
def test_bad_tfrecord(data: bytes, message: str) -> None:
    with pytest.raises(RecordError) as caught:
        requests_for(data, settings(split_type="TFRecord"))
    assert str(caught.value) == message


# --- InputFilter --------------------------------------------------------------------------------


def test_csv_input_filter_selects_columns_inclusively() -> None:
    data = b"id1,1,2,3,4,5\nid2,6,7,8,9,10\r\nid3,11,12,13,14,15"
    records, requests = requests_for(data, settings(input_filter="$[1:]"))
    assert records == [b"id1,1,2,3,4,5\n", b"id2,6,7,8,9,10\r\n", b"id3,11,12,13,14,15"]
    assert bodies(requests) == [(b"1,2,3,4,5\n6,7,8,9,10\r\n11,12,13,14,15", 0, 3)]
    _, requests = requests_for(data, settings(input_filter="$[1:3]", batch_strategy="SingleRecord"))
    assert bodies(requests) == [(b"1,2,3\n", 0, 1), (b"6,7,8\r\n", 1, 1), (b"11,12,13", 2, 1)]
    _, requests = requests_for(data, settings(input_filter="$[0,-1]"))
    assert bodies(requests) == [(b"id1,5\nid2,10\r\nid3,15", 0, 3)]
    _, requests = requests_for(data, settings(input_filter="$[2]", batch_strategy="SingleRecord"))
    assert bodies(requests) == [(b"2\n", 0, 1), (b"7\r\n", 1, 1), (b"12", 2, 1)]


def test_csv_input_filter_keeps_quoting_valid() -> None:
    _, requests = requests_for(b'7,"a,b",x\n', settings(input_filter="$[1:]"))
    assert bodies(requests) == [(b'"a,b",x\n', 0, 1)]


def test_input_filter_on_split_none_filters_each_row() -> None:
    _, requests = requests_for(b"a,1,2\nb,3,4\n", settings(split_type="None", input_filter="$[1:]"))
    assert bodies(requests) == [(b"1,2\n3,4\n", 0, 1)]
    doc = b'{"id": 3, "features": [1, 2]}'
    _, requests = requests_for(
        doc, settings(split_type="None", content_type="application/json", input_filter="$.features")
    )
    assert bodies(requests) == [(b"[1,2]", 0, 1)]


def test_json_lines_input_filter() -> None:
    data = b'{"id": 1, "features": [1, 2]}\n{"id": 2, "features": [3, 4], "x": "\xc3\xa9"}\n'
    json_lines = {"content_type": "application/jsonlines", "accept": "application/jsonlines"}
    _, requests = requests_for(data, settings(input_filter="$.features", **json_lines))
    assert bodies(requests) == [(b"[1,2]\n[3,4]\n", 0, 2)]
    with pytest.raises(RecordError) as caught:
        requests_for(data, settings(input_filter="$['id','x']", **json_lines))
    assert (
        str(caught.value)
        == "record 1: DataProcessing.InputFilter: JSONPath \"$['id','x']\": the record has no attribute 'x'"
    )
    _, requests = requests_for(data[30:], settings(input_filter="$['features','x']", **json_lines))
    assert bodies(requests) == [(b'{"features":[3,4],"x":"\xc3\xa9"}\n', 0, 1)]


def test_input_filter_errors_name_the_record() -> None:
    with pytest.raises(RecordError) as caught:
        requests_for(b"1,2,3\n4,5\n", settings(input_filter="$[2]"))
    assert str(caught.value) == (
        "record 2: DataProcessing.InputFilter: JSONPath '$[2]': "
        "index 2 is outside the 2 elements of the array"
    )
    with pytest.raises(RecordError, match=r"^record 2: the input is not valid JSON Lines: Expecting value"):
        requests_for(
            b'{"a": 1}\nnot json\n',
            settings(content_type="application/jsonlines", accept=None, input_filter="$.a"),
        )
    with pytest.raises(
        RecordError, match=r"^record 1: the input is not UTF-8 text \(invalid start byte at byte 0\)"
    ):
        requests_for(b"\xff,1\n", settings(input_filter="$[0]"))


def test_an_unclosed_csv_quote_names_its_record() -> None:
    with pytest.raises(RecordError) as caught:
        requests_for(b'1,2\na,"b\nc"\n', settings(input_filter="$[0]"))
    assert str(caught.value) == "record 2: the input is not valid CSV: unexpected end of data"


# --- assemble without a join --------------------------------------------------------------------


def test_assemble_line_adds_one_newline_per_response() -> None:
    records, requests = requests_for(CSV, settings(batch_strategy="SingleRecord"))
    assert assemble(records, requests, [b"0.1", b"0.2\n", b"0.3"], settings()) == b"0.1\n0.2\n0.3\n"


def test_assemble_none_concatenates_responses() -> None:
    records, requests = requests_for(CSV, settings(batch_strategy="SingleRecord", assemble_with="None"))
    assert (
        assemble(records, requests, [b"0.1", b"0.2\n", b"0.3"], settings(assemble_with="None"))
        == b"0.10.2\n0.3"
    )


def test_assemble_multi_record_responses_are_units() -> None:
    records, requests = requests_for(CSV + b"10,11,12\n", settings(max_payload_bytes=15))
    assert bodies(requests) == [(b"1,2,3\n4,5,6\n", 0, 2), (b"7,8,9\n10,11,12\n", 2, 2)]
    assert assemble(records, requests, [b"0.1\n0.2", b"0.3\n0.4\n"], settings()) == b"0.1\n0.2\n0.3\n0.4\n"
    assert assemble(records, requests, [b"0.1,0.2", b"0.3,0.4"], settings()) == b"0.1,0.2\n0.3,0.4\n"
    assert (
        assemble(records, requests, [b"0.1\n0.2", b"0.3\n0.4\n"], settings(assemble_with="None"))
        == b"0.1\n0.20.3\n0.4\n"
    )


def test_assemble_recordio_binary_responses() -> None:
    records, requests = requests_for(
        RIO_ABC + RIO_ABCD, settings(split_type="RecordIO", batch_strategy="SingleRecord")
    )
    out = settings(split_type="RecordIO", assemble_with="None", accept="application/octet-stream")
    assert assemble(records, requests, [b"\x00\x01", b"\x02"], out) == b"\x00\x01\x02"


def test_assemble_of_nothing_is_empty() -> None:
    assert assemble([], [], [], settings()) == b""
    assert assemble([], [], [], settings(join_source="Input", output_filter="$[0]")) == b""


def test_assemble_needs_one_response_per_request() -> None:
    records, requests = requests_for(CSV, settings(batch_strategy="SingleRecord"))
    with pytest.raises(RecordError, match=r"^3 requests were sent but 2 responses came back$"):
        assemble(records, requests, [b"1", b"2"], settings())


# --- OutputFilter without a join ----------------------------------------------------------------


def test_output_filter_on_single_record_csv_responses() -> None:
    records, requests = requests_for(CSV, settings(batch_strategy="SingleRecord"))
    out = settings(output_filter="$[1]")
    assert assemble(records, requests, [b"a,0.9\n", b"b,0.8", b"c,0.7\r\n"], out) == b"0.9\n0.8\n0.7\n"


def test_output_filter_splits_multi_record_responses_by_line() -> None:
    records, requests = requests_for(CSV, settings())
    out = settings(output_filter="$[0]")
    assert assemble(records, requests, [b"a,0.9\nb,0.8\nc,0.7\n"], out) == b"a\nb\nc\n"
    # AssembleWith None keeps each record's newline, since the response had it.
    assert (
        assemble(
            records, requests, [b"a,0.9\nb,0.8\nc,0.7"], settings(output_filter="$[0]", assemble_with="None")
        )
        == b"a\nb\nc"
    )


def test_output_filter_on_a_json_array_response_with_one_element_per_record() -> None:
    json_lines = {"content_type": "application/jsonlines", "accept": "application/json"}
    records, requests = requests_for(b'{"a":1}\n{"a":2}\n', settings(**json_lines))
    out = settings(output_filter="$.score", **json_lines)
    assert assemble(records, requests, [b'[{"score": 0.1}, {"score": 0.2}]'], out) == b"0.1\n0.2\n"


def test_output_filter_on_split_none_json() -> None:
    records, requests = requests_for(
        b'{"x": 1}', settings(split_type="None", content_type="application/json")
    )
    out = settings(
        split_type="None", assemble_with="None", accept="application/json", output_filter="$.predictions[0]"
    )
    assert assemble(records, requests, [b'{"predictions": [[0.2, 0.8]], "model": "m"}'], out) == b"[0.2,0.8]"


def test_output_filter_errors_name_the_record() -> None:
    records, requests = requests_for(CSV, settings(batch_strategy="SingleRecord"))
    with pytest.raises(RecordError) as caught:
        assemble(records, requests, [b"a,1", b"b", b"c,3"], settings(output_filter="$[1]"))
    assert str(caught.value) == (
        "record 2: DataProcessing.OutputFilter: JSONPath '$[1]': "
        "index 1 is outside the 1 elements of the array"
    )


def test_a_multi_record_response_with_the_wrong_number_of_lines() -> None:
    records, requests = requests_for(CSV + b"10,11\n", settings(max_payload_bytes=12))
    with pytest.raises(RecordError) as caught:
        assemble(records, requests, [b"1\n2\n", b"3\n"], settings(output_filter="$[0]"))
    assert str(caught.value) == (
        "records 3-4: the response to these 2 records has 1 lines; it needs one line per record (or, for "
        "JSON, an array with one element per record) so each can be joined or filtered"
    )
    assert caught.value.record == 3


# --- JoinSource Input ---------------------------------------------------------------------------


def test_csv_join_appends_the_output_columns_to_the_unfiltered_input() -> None:
    data = b"id1,1,2,3\nid2,4,5,6\n"
    job = settings(join_source="Input", input_filter="$[1:]")
    records, requests = requests_for(data, job)
    assert bodies(requests) == [(b"1,2,3\n4,5,6\n", 0, 2)]
    assert assemble(records, requests, [b"0.1\n0.2\n"], job) == b"id1,1,2,3,0.1\nid2,4,5,6,0.2\n"
    # The developer guide's example: keep the ID column and the prediction.
    keep = settings(join_source="Input", input_filter="$[1:]", output_filter="$[0,-1]")
    assert assemble(records, requests, [b"0.1\n0.2\n"], keep) == b"id1,0.1\nid2,0.2\n"
    # Several output columns; slices of the joined row are inclusive.
    cols = settings(join_source="Input", output_filter="$[0,4:5]")
    assert assemble(records, requests, [b"a,0.1\nb,0.2\n"], cols) == b"id1,a,0.1\nid2,b,0.2\n"


def test_csv_join_single_record() -> None:
    job = settings(join_source="Input", batch_strategy="SingleRecord")
    records, requests = requests_for(b'1,"x,y"\n2,z\r\n', job)
    assert assemble(records, requests, [b"yes\n", b"no"], job) == b'1,"x,y",yes\n2,z,no\n'


def test_csv_join_on_a_whole_object() -> None:
    job = settings(join_source="Input", split_type="None", assemble_with="None")
    records, requests = requests_for(b"1,2\n3,4\n", job)
    assert assemble(records, requests, [b"a\nb\n"], job) == b"1,2,a\n3,4,b\n"
    assert assemble(records, requests, [b"a\nb"], job) == b"1,2,a\n3,4,b"
    with pytest.raises(RecordError) as caught:
        assemble(records, requests, [b"a\n"], job)
    assert str(caught.value) == (
        "record 1: the input has 2 rows but its response has 1; JoinSource Input pairs them one to one"
    )


def test_json_lines_join_adds_sagemaker_output_to_objects() -> None:
    json_lines = {"content_type": "application/jsonlines", "accept": "application/jsonlines"}
    job = settings(join_source="Input", input_filter="$.features", **json_lines)
    data = b'{"id": 1, "features": [1, 2]}\n{"id": 2, "features": [3, 4]}\n'
    records, requests = requests_for(data, job)
    assert bodies(requests) == [(b"[1,2]\n[3,4]\n", 0, 2)]
    responses = [b'{"label": 1}\n{"label": 0}\n']
    assert assemble(records, requests, responses, job) == (
        b'{"id":1,"features":[1,2],"SageMakerOutput":{"label":1}}\n'
        b'{"id":2,"features":[3,4],"SageMakerOutput":{"label":0}}\n'
    )
    keep = settings(join_source="Input", output_filter="$['id','SageMakerOutput']", **json_lines)
    assert assemble(records, requests, responses, keep) == (
        b'{"id":1,"SageMakerOutput":{"label":1}}\n{"id":2,"SageMakerOutput":{"label":0}}\n'
    )
    # One JSON array answering both records is split into its elements.
    assert assemble(records, requests, [b"[0.3, 0.7]"], keep) == (
        b'{"id":1,"SageMakerOutput":0.3}\n{"id":2,"SageMakerOutput":0.7}\n'
    )


def test_json_join_wraps_inputs_that_are_not_objects() -> None:
    json_type = {"content_type": "application/json", "accept": "application/json"}
    job = settings(join_source="Input", batch_strategy="SingleRecord", **json_type)
    records, requests = requests_for(b'[1, 2]\n"text"\n', job)
    assert assemble(records, requests, [b"[0.5]", b'"positive"'], job) == (
        b'{"SageMakerInput":[1,2],"SageMakerOutput":[0.5]}\n{"SageMakerInput":"text","SageMakerOutput":"positive"}\n'
    )
    whole = settings(join_source="Input", split_type="None", assemble_with="None", **json_type)
    records, requests = requests_for(b'{"instances": [[1, 2], [3, 4]]}', whole)
    assert assemble(records, requests, [b'{"predictions": [0, 1]}'], whole) == (
        b'{"instances":[[1,2],[3,4]],"SageMakerOutput":{"predictions":[0,1]}}'
    )


def test_join_errors_for_responses_that_are_not_the_format() -> None:
    json_lines = {"content_type": "application/jsonlines", "accept": "application/jsonlines"}
    job = settings(join_source="Input", batch_strategy="SingleRecord", **json_lines)
    records, requests = requests_for(b'{"a": 1}\n{"a": 2}\n', job)
    with pytest.raises(RecordError, match=r"^record 2: the response is not valid JSON Lines"):
        assemble(records, requests, [b"1", b"oops"], job)


def test_output_filter_outside_the_joined_row() -> None:
    job = settings(join_source="Input", output_filter="$[0,9]")
    records, requests = requests_for(b"a,b\n", job)
    with pytest.raises(RecordError) as caught:
        assemble(records, requests, [b"c\n"], job)
    assert str(caught.value) == (
        "record 1: DataProcessing.OutputFilter: JSONPath '$[0,9]': "
        "index 9 is outside the 3 elements of the array"
    )


def test_whole_object_json_lines_join_skips_blank_lines() -> None:
    mime = "application/jsonlines"
    job = settings(
        split_type="None", assemble_with="None", content_type=mime, accept=mime, join_source="Input"
    )
    records, requests = requests_for(b'{"a": 1}\n   \n{"a": 2}\n', job)
    assert assemble(records, requests, [b"5\n\n6\n"], job) == (
        b'{"a":1,"SageMakerOutput":5}\n{"a":2,"SageMakerOutput":6}\n'
    )


def test_an_empty_csv_response_joins_no_columns() -> None:
    job = settings(join_source="Input", batch_strategy="SingleRecord")
    records, requests = requests_for(b"1,2\n3,4\n", job)
    assert assemble(records, requests, [b"", b"x"], job) == b"1,2\n3,4,x\n"


def test_a_whitespace_line_is_a_record() -> None:
    job = settings(join_source="Input", batch_strategy="SingleRecord")
    records, requests = requests_for(b" \n1\n", job)
    assert bodies(requests) == [(b" \n", 0, 1), (b"1\n", 1, 1)]
    assert assemble(records, requests, [b"a", b"b"], job) == b" ,a\n1,b\n"


# --- manifests ----------------------------------------------------------------------------------

FIELD = "TransformInput.DataSource.S3DataSource.S3Uri"


def test_manifest_lists_objects_in_order() -> None:
    body = b'[{"prefix": "s3://bucket/some/prefix/"}, "relative/path/a.csv", "b.csv", "relative/c"]'
    assert read_manifest(body, FIELD) == [
        "s3://bucket/some/prefix/relative/path/a.csv",
        "s3://bucket/some/prefix/b.csv",
        "s3://bucket/some/prefix/relative/c",
    ]
    assert manifest_entries(body, FIELD) == (
        "s3://bucket/some/prefix/",
        ["relative/path/a.csv", "b.csv", "relative/c"],
    )


def test_manifest_prefix_is_concatenated_as_written() -> None:
    assert read_manifest(b'[{"prefix": "s3://b/data-"}, "1.csv", "2.csv"]', FIELD) == [
        "s3://b/data-1.csv",
        "s3://b/data-2.csv",
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"not json",
            f"the manifest named by {FIELD} is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        (b"\xff", f"the manifest named by {FIELD} is not valid JSON"),
        (b'{"prefix": "s3://b/"}', f"the manifest named by {FIELD} must be a JSON array starting with"),
        (b"[]", f"the manifest named by {FIELD} must be a JSON array starting with"),
        (
            b'["a", "b"]',
            f'the manifest named by {FIELD} must start with {{"prefix": "s3://bucket/prefix/"}}, not "a"',
        ),
        (b'[{"prefix": ""}, "a"]', 'not {"prefix": ""}'),
        (b'[{"prefix": 3}, "a"]', 'not {"prefix": 3}'),
        (b'[{"prefix": "s3://b/", "x": 1}, "a"]', "its first entry has unknown keys ['x']"),
        (b'[{"prefix": "s3://b/"}, "a", 5]', "entry 3 must be a non-empty relative path string, not 5"),
        (b'[{"prefix": "s3://b/"}, ""]', 'entry 2 must be a non-empty relative path string, not ""'),
        (
            b'[{"prefix": "s3://b/"}, {"prefix": "s3://c/"}]',
            "entry 2 must be a non-empty relative path string",
        ),
        (b'[{"prefix": "s3://b/"}]', f"the manifest named by {FIELD} lists no objects after its prefix"),
    ],
)
def test_bad_manifests(body: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        read_manifest(body, FIELD)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- every split / strategy / assembly without a join -----------------------------------------


@pytest.mark.parametrize(
    ("split", "strategy", "data", "sent", "responses", "by_line", "concatenated"),
    [
        ("Line", "SingleRecord", b"a\nb\n", [b"a\n", b"b\n"], [b"1", b"2"], b"1\n2\n", b"12"),
        ("Line", "MultiRecord", b"a\nb\n", [b"a\nb\n"], [b"1\n2"], b"1\n2\n", b"1\n2"),
        ("None", "SingleRecord", b"a\nb\n", [b"a\nb\n"], [b"1\n2"], b"1\n2\n", b"1\n2"),
        ("None", "MultiRecord", b"a\nb\n", [b"a\nb\n"], [b"1\n2\n"], b"1\n2\n", b"1\n2\n"),
        ("RecordIO", "SingleRecord", RIO_ABC + RIO_ABCD, [b"abc", b"abcd"], [b"x", b"y"], b"x\ny\n", b"xy"),
        ("RecordIO", "MultiRecord", RIO_ABC + RIO_ABCD, [RIO_ABC + RIO_ABCD], [b"xy"], b"xy\n", b"xy"),
        ("TFRecord", "SingleRecord", TF_ABC + TF_EMPTY, [b"abc", b""], [b"x", b"y"], b"x\ny\n", b"xy"),
        ("TFRecord", "MultiRecord", TF_ABC + TF_EMPTY, [TF_ABC + TF_EMPTY], [b"\x00"], b"\x00\n", b"\x00"),
    ],
)
def test_every_split_and_strategy(
    split: str,
    strategy: str,
    data: bytes,
    sent: list[bytes],
    responses: list[bytes],
    by_line: bytes,
    concatenated: bytes,
) -> None:
    job = settings(split_type=split, batch_strategy=strategy, content_type=None, accept=None)
    assert check_settings(job) is None
    records, requests = requests_for(data, job)
    assert [r.body for r in requests] == sent
    assert sum(r.count for r in requests) == len(records)
    assert assemble(records, requests, responses, settings(split_type=split, assemble_with="Line")) == by_line
    assert (
        assemble(records, requests, responses, settings(split_type=split, assemble_with="None"))
        == concatenated
    )


# --- every join the rules allow, with and without an OutputFilter ----------------------------

CSV_IN = b"k1,1,2\nk2,3,4\n"
JSONL_IN = b'{"k": 1, "f": [1, 2]}\n[3, 4]\n'


@pytest.mark.parametrize(
    ("mime", "strategy", "data", "responses", "output_filter", "expected"),
    [
        ("text/csv", "SingleRecord", CSV_IN, [b"0.1\n", b"0.2\n"], "$", b"k1,1,2,0.1\nk2,3,4,0.2\n"),
        ("text/csv", "MultiRecord", CSV_IN, [b"0.1\n0.2\n"], "$", b"k1,1,2,0.1\nk2,3,4,0.2\n"),
        ("text/csv", "MultiRecord", CSV_IN, [b"0.1\n0.2"], "$[0,3]", b"k1,0.1\nk2,0.2\n"),
        ("text/csv", "SingleRecord", CSV_IN, [b"a,b", b"c,d"], "$[-2:]", b"a,b\nc,d\n"),
        (
            "application/jsonlines",
            "SingleRecord",
            JSONL_IN,
            [b"1", b'{"p": 0}'],
            "$",
            b'{"k":1,"f":[1,2],"SageMakerOutput":1}\n{"SageMakerInput":[3,4],"SageMakerOutput":{"p":0}}\n',
        ),
        (
            "application/jsonlines",
            "MultiRecord",
            JSONL_IN,
            [b'1\n{"p": 0}\n'],
            "$.SageMakerOutput",
            b'1\n{"p":0}\n',
        ),
        (
            "application/json",
            "MultiRecord",
            JSONL_IN,
            [b'[\n  {"p": 1},\n  {"p": 0}\n]\n'],
            "$.SageMakerOutput.p",
            b"1\n0\n",
        ),
        (
            "application/json",
            "SingleRecord",
            JSONL_IN,
            [b"[0.5]", b"[0.25]"],
            "$['SageMakerOutput']",
            b"[0.5]\n[0.25]\n",
        ),
    ],
)
def test_every_line_join(
    mime: str, strategy: str, data: bytes, responses: list[bytes], output_filter: str, expected: bytes
) -> None:
    job = settings(
        content_type=mime,
        accept=mime,
        batch_strategy=strategy,
        join_source="Input",
        output_filter=output_filter,
    )
    assert check_settings(job) is None
    records, requests = requests_for(data, job)
    assert assemble(records, requests, responses, job) == expected


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
@pytest.mark.parametrize(
    ("mime", "data", "response", "expected"),
    [
        ("text/csv", b"1,2\n3,4", b"a\nb\n", b"1,2,a\n3,4,b\n"),
        (
            "application/jsonlines",
            b'{"a": 1}\n{"a": 2}\n',
            b"5\n6",
            b'{"a":1,"SageMakerOutput":5}\n{"a":2,"SageMakerOutput":6}',
        ),
        ("application/json", b'{"rows": [1, 2]}', b"[7, 8]", b'{"rows":[1,2],"SageMakerOutput":[7,8]}'),
        (
            "application/json",
            b"[1, 2]",
            b'{"p": 1}\n',
            b'{"SageMakerInput":[1,2],"SageMakerOutput":{"p":1}}\n',
        ),
    ],
)
def test_every_whole_object_join(
    strategy: str, mime: str, data: bytes, response: bytes, expected: bytes
) -> None:
    job = settings(
        split_type="None",
        assemble_with="None",
        content_type=mime,
        accept=mime,
        batch_strategy=strategy,
        join_source="Input",
    )
    assert check_settings(job) is None
    records, requests = requests_for(data, job)
    assert bodies(requests) == [(data, 0, 1)]
    assert assemble(records, requests, [response], job) == expected


def test_join_keeps_the_input_before_the_input_filter_and_filters_what_is_sent() -> None:
    mime = "application/jsonlines"
    job = settings(
        content_type=mime,
        accept=mime,
        join_source="Input",
        input_filter="$.features",
        output_filter="$['id','SageMakerOutput']",
        max_payload_bytes=6,
    )
    records, requests = requests_for(b'{"id": "a", "features": [1]}\n{"id": "b", "features": [22]}\n', job)
    # "[1]\n" (4 bytes) and "[22]\n" (5 bytes) do not fit in 6 bytes together.
    assert bodies(requests) == [(b"[1]\n", 0, 1), (b"[22]\n", 1, 1)]
    assert assemble(records, requests, [b"0.1", b"0.9"], job) == (
        b'{"id":"a","SageMakerOutput":0.1}\n{"id":"b","SageMakerOutput":0.9}\n'
    )
