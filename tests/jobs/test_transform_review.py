"""Review of batch transform's data handling against SageMaker's documented behaviour.

The first group replays the developer guide's worked examples ("Associate Prediction Results with
Input Records") and passes. Every test after the "findings" marker fails on the code as reviewed,
for the reason its docstring gives: a crash (an exception other than RecordError/ManifestError, which
execution.py does not catch, so the whole job fails on "an internal error" instead of one object),
an output that is not JSON, a valid record refused, or an output written outside S3OutputPath."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from moorage.jobs.objects import ObjectError
from moorage.jobs.transform import ManifestError, RecordError, TransformSettings, assemble, requests_for
from moorage.jobs.transform.inputs import input_objects
from moorage.jobs.transform.manifest import read_manifest
from tests.support.transform import MB, settings

JSONL = {"content_type": "application/jsonlines", "accept": "application/jsonlines"}
JSON = {"content_type": "application/json", "accept": "application/json"}


def transform(data: bytes, s: TransformSettings, responses: list[bytes]) -> tuple[list[bytes], bytes]:
    """The request bodies and the output object, the model answering `responses` in order."""
    records, requests = requests_for(data, s)
    assert len(requests) == len(responses)
    return [r.body for r in requests], assemble(records, requests, responses, s)


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


# --- the developer guide's worked examples (these pass) -------------------------------------------


def test_guide_csv_example_id_column_excluded_from_input_and_kept_in_output() -> None:
    """InputFilter $[1:], JoinSource Input, OutputFilter $: five columns, the first an ID."""
    s = settings(input_filter="$[1:]", join_source="Input")
    sent, out = transform(b"id1,1,2,3,4\nid2,5,6,7,8\n", s, [b"0.1\n0.2\n"])
    assert sent == [b"1,2,3,4\n5,6,7,8\n"]
    assert out == b"id1,1,2,3,4,0.1\nid2,5,6,7,8,0.2\n"


def test_guide_csv_join_appends_the_label() -> None:
    """Record [1,2,3] and label [1] give [1,2,3,1]."""
    sent, out = transform(b"1,2,3\n", settings(join_source="Input"), [b"1\n"])
    assert sent == [b"1,2,3\n"]
    assert out == b"1,2,3,1\n"


def test_guide_json_join_adds_sagemaker_output() -> None:
    """{"key":1} with result {"label":1} gives {"key":1,"SageMakerOutput":{"label":1}}."""
    _, out = transform(b'{"key":1}\n', settings(join_source="Input", **JSONL), [b'{"label":1}\n'])
    assert json.loads(out) == {"key": 1, "SageMakerOutput": {"label": 1}}


def test_guide_json_non_object_input_is_wrapped() -> None:
    s = settings(split_type="None", assemble_with="None", join_source="Input", **JSON)
    _, out = transform(b"[1,2,3]", s, [b'{"label":1}'])
    assert json.loads(out) == {"SageMakerInput": [1, 2, 3], "SageMakerOutput": {"label": 1}}


def test_guide_json_example_id_attribute() -> None:
    """InputFilter $.features, JoinSource Input, OutputFilter $['id','SageMakerOutput']."""
    s = settings(
        input_filter="$.features", join_source="Input", output_filter="$['id','SageMakerOutput']", **JSONL
    )
    data = b'{"id":1,"features":[0.5,1.5]}\n{"id":2,"features":[2.5,3.5]}\n'
    sent, out = transform(data, s, [b'{"label":0}\n{"label":1}\n'])
    assert sent == [b"[0.5,1.5]\n[2.5,3.5]\n"]
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": 1, "SageMakerOutput": {"label": 0}},
        {"id": 2, "SageMakerOutput": {"label": 1}},
    ]


# --- findings (each fails now) ---------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = b"9" * 5000  # a valid JSON integer; Python's int() refuses more than 4300 digits


def test_deeply_nested_json_input_record_is_a_record_error() -> None:
    """filters.parse_row: json.loads raises RecursionError, which nothing turns into a RecordError."""
    with pytest.raises(RecordError):
        requests_for(b'{"a":' + DEEP + b"}\n", settings(input_filter="$.a", **JSONL))


def test_deeply_nested_json_response_is_a_record_error() -> None:
    """A model's response nested 100 000 deep: RecursionError out of assemble (join, SingleRecord)."""
    s = settings(join_source="Input", batch_strategy="SingleRecord", **JSONL)
    records, requests = requests_for(b'{"a":1}\n', s)
    with pytest.raises(RecordError):
        assemble(records, requests, [DEEP], s)


def test_deeply_nested_multi_record_response_is_a_record_error() -> None:
    """records._split_response catches only JSONDecodeError/UnicodeDecodeError around json.loads."""
    s = settings(output_filter="$[0]", **JSONL)
    records, requests = requests_for(b"[1]\n[2]\n", s)
    with pytest.raises(RecordError):
        assemble(records, requests, [DEEP], s)


def test_huge_integer_in_a_whole_json_object_is_not_a_crash() -> None:
    """records._multi_line_rows catches only JSONDecodeError; int()'s digit limit raises ValueError."""
    s = settings(split_type="None", assemble_with="None", input_filter="$.a", **JSON)
    with contextlib.suppress(RecordError):
        requests_for(b'{\n"a": [' + HUGE + b"]\n}", s)


def test_huge_integer_in_a_multi_record_json_response_is_not_a_crash() -> None:
    """records._split_response: json.loads raises a plain ValueError for a 5000-digit integer."""
    s = settings(join_source="Input", **JSONL)
    records, requests = requests_for(b'{"a":1}\n{"a":2}\n', s)
    with contextlib.suppress(RecordError):
        assemble(records, requests, [b"[" + HUGE + b"," + HUGE + b"]"], s)


@pytest.mark.parametrize(
    ("record", "response"),
    [(b'{"a":"\\ud800"}\n', b"1\n"), (b'{"a":1}\n', b'"\\udfff"\n')],
    ids=["lone-surrogate-in-input", "lone-surrogate-in-response"],
)
def test_lone_surrogate_escape_is_not_a_crash(record: bytes, response: bytes) -> None:
    """ "\\ud800" is valid JSON syntax; filters.render_rows (ensure_ascii=False) keeps the lone surrogate
    and records._regroup's str.encode() raises UnicodeEncodeError."""
    s = settings(join_source="Input", **JSONL)
    records, requests = requests_for(record, s)
    try:
        out = assemble(records, requests, [response], s)
    except RecordError:
        return
    _strict_json(out.decode())


@pytest.mark.parametrize("number", [b"1e400", b"NaN", b"-Infinity"])
def test_joined_json_output_is_valid_json(number: bytes) -> None:
    """json.loads turns 1e400 into inf and accepts NaN/Infinity; json.dumps writes Infinity/NaN,
    which are not JSON: the output object is unreadable by any strict JSON reader."""
    s = settings(join_source="Input", **JSONL)
    records, requests = requests_for(b'{"a":' + number + b"}\n", s)
    try:
        out = assemble(records, requests, [b"1\n"], s)
    except RecordError:
        return
    _strict_json(out.decode())


def test_csv_field_over_128_kib_is_valid_csv() -> None:
    """Python's csv module refuses fields over csv.field_size_limit() (131072 characters) by default,
    so a valid CSV record (well under MaxPayloadInMB) fails as 'not valid CSV' once a filter or a
    join parses it."""
    big = b"x" * 200_000
    s = settings(input_filter="$[1:]", join_source="Input", output_filter="$[0,-1]")
    sent, out = transform(b"id1," + big + b"\n", s, [b"0.9\n"])
    assert sent == [big + b"\n"]
    assert out == b"id1,0.9\n"


def test_deeply_nested_manifest_is_a_manifest_error() -> None:
    """manifest.read_manifest catches JSONDecodeError/UnicodeDecodeError, not RecursionError."""
    with pytest.raises(ManifestError):
        read_manifest(b"[" * 100_000 + b"]" * 100_000, "S3Uri")


def test_manifest_with_a_huge_number_is_a_manifest_error() -> None:
    """A 5000-digit entry raises a plain ValueError (not ManifestError, which execute() catches)."""
    with pytest.raises(ManifestError):
        read_manifest(b'[{"prefix":"s3://b/p/"},' + HUGE + b"]", "S3Uri")


def test_manifest_entry_with_dot_dot_cannot_write_outside_the_output_path(tmp_path: Path) -> None:
    """inputs.input_objects names an output '<S3OutputPath>/<entry>.out' with the entry as written, so
    '../x' (or 'a/../../x') puts the output beside, not under, a local S3OutputPath (and reads
    outside the manifest's prefix). SageMaker's output key for any entry stays under the output prefix."""
    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    manifest = tmp_path / "in" / "manifest.json"
    manifest.write_text(json.dumps([{"prefix": f"{tmp_path / 'in'}/"}, "../secret", "a/../../../x"]))
    job = {
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": str(manifest)}}
        },
        "TransformOutput": {"S3OutputPath": str(out)},
    }
    try:
        objects = input_objects(job)
    except (ManifestError, ObjectError):
        return
    for item in objects:
        assert Path(item.output).resolve().is_relative_to(out.resolve()), item.output


# --- after the fixes: what each finding now does ---------------------------------------------------


def test_nesting_and_constants_are_refused_with_the_reason() -> None:
    s = settings(input_filter="$.a", **JSONL)
    with pytest.raises(RecordError, match=r"^record 2: the input is not valid JSON Lines: nested too deeply"):
        requests_for(b'{"a":1}\n{"a":' + DEEP + b"}\n", s)
    with pytest.raises(
        RecordError, match=r"^record 1: the input is not valid JSON Lines: NaN is not a JSON value"
    ):
        requests_for(b'{"a":NaN}\n', s)
    whole = settings(split_type="None", assemble_with="None", input_filter="$.a", **JSON)
    with pytest.raises(RecordError, match=r"^record 1: the input is not valid JSON: -Infinity is not a JSON"):
        requests_for(b'{\n"a": -Infinity\n}', whole)


def test_an_integer_over_pythons_digit_limit_is_kept_as_written() -> None:
    s = settings(input_filter="$.a", join_source="Input", output_filter="$['a','SageMakerOutput']", **JSONL)
    sent, out = transform(b'{"a":[' + HUGE + b',-1],"b":2}\n', s, [b'{"p":-' + HUGE + b"}\n"])
    assert sent == [b"[" + HUGE + b",-1]\n"]
    assert out == b'{"a":[' + HUGE + b',-1],"SageMakerOutput":{"p":-' + HUGE + b"}}\n"


def test_a_float_beyond_a_double_is_refused_when_it_must_be_rewritten() -> None:
    s = settings(join_source="Input", **JSONL)
    records, requests = requests_for(b'{"a":1}\n{"a":1e400}\n', s)
    with pytest.raises(RecordError) as caught:
        assemble(records, requests, [b"1\n2\n"], s)
    assert str(caught.value) == (
        "record 2: the output cannot be written as JSON: a number is beyond a double's range "
        "(such as 1e400); write it within +-1.8e308"
    )
    # Passed through untouched (no filter, no join), it is the model's business.
    assert transform(b"1e400\n", settings(**JSONL), [b"ok\n"])[0] == [b"1e400\n"]


def test_a_lone_surrogate_is_written_escaped() -> None:
    s = settings(join_source="Input", **JSONL)
    _, out = transform(b'{"a":"\\ud800","b":"\xc3\xa9"}\n{"a":"\xc3\xa9"}\n', s, [b"1\n2\n"])
    assert out == b'{"a":"\\ud800","b":"\\u00e9","SageMakerOutput":1}\n{"a":"\xc3\xa9","SageMakerOutput":2}\n'


def test_gzip_is_refused_past_the_decompressed_limit() -> None:
    s = settings(compression="Gzip", batch_strategy="SingleRecord")
    packed = gzip.compress(b"1\n" * 50)
    assert len(requests_for(packed, s, max_decompressed_bytes=100)[1]) == 50
    with pytest.raises(RecordError) as caught:
        requests_for(packed + gzip.compress(b"2\n"), s, max_decompressed_bytes=100)
    assert str(caught.value) == (
        "the object decompresses to more than 100 bytes, the most one Gzip object may hold; split the "
        "data into several smaller objects (each is transformed on its own)"
    )
    # A bomb: 64 MiB of zeros in 64 KiB of gzip stops at the limit.
    with pytest.raises(RecordError, match="more than 1,048,576 bytes"):
        requests_for(gzip.compress(bytes(64 * MB)), s, max_decompressed_bytes=MB)


def test_gzip_members_padding_and_truncation() -> None:
    s = settings(compression="Gzip")
    members = gzip.compress(b"a\n") + b"\0" * 3 + gzip.compress(b"") + gzip.compress(b"b\n") + b"\0"
    assert requests_for(members, s)[0] == [b"a\n", b"b\n"]
    big = bytes(range(256)) * 20_000  # over one input chunk, compressed
    assert requests_for(gzip.compress(big), settings(compression="Gzip", split_type="None"))[0] == [big]
    for bad in (gzip.compress(b"a\n")[:-1], b"\0" + gzip.compress(b"a\n"), gzip.compress(b"a\n") + b"x"):
        with pytest.raises(RecordError, match=r"^the object is not valid gzip \(CompressionType is Gzip\)"):
            requests_for(bad, s)


def test_multi_record_responses_split_alike_for_one_record_and_several() -> None:
    """MultiRecord: one JSON array with an element per record is split, whatever the count."""
    s = settings(join_source="Input", output_filter="$.SageMakerOutput", **JSONL)
    two = transform(b'{"a":1}\n{"a":2}\n', s, [b"[0.3,0.7]"])[1]
    one = transform(b'{"a":1}\n{"a":2}\n', dataclasses.replace(s, max_payload_bytes=8), [b"[0.3]", b"[0.7]"])
    assert two == one[1] == b"0.3\n0.7\n"
    # SingleRecord: the response is the record's own output, an array included.
    single = settings(
        join_source="Input", output_filter="$.SageMakerOutput", batch_strategy="SingleRecord", **JSONL
    )
    assert transform(b'{"a":1}\n', single, [b"[0.3]"])[1] == b"[0.3]\n"
    # A per-record array longer than one element is one line, as for several records.
    assert transform(b'{"a":1}\n', s, [b"[0.3,0.7]\n"])[1] == b"[0.3,0.7]\n"
    records, requests = requests_for(b'{"a":1}\n', s)
    with pytest.raises(RecordError) as caught:
        assemble(records, requests, [b"1\n2\n"], s)
    assert str(caught.value) == (
        "record 1: the response to this record has 2 lines; it needs one line per record (or, for JSON, "
        "an array with one element per record) so each can be joined or filtered"
    )


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (".", 'has a "." or ".." path segment'),
        ("a/./b", 'has a "." or ".." path segment'),
        ("a/..", 'has a "." or ".." path segment'),
        ("/../x", 'has a "." or ".." path segment'),
        ("a\u0000b", "holds a NUL character"),
        ("a\ud800", "holds a lone UTF-16 surrogate"),
    ],
)
def test_manifest_entries_that_could_leave_the_prefix_are_refused(entry: str, problem: str) -> None:
    body = json.dumps([{"prefix": "s3://b/p/"}, "ok", entry]).encode()
    with pytest.raises(ManifestError) as caught:
        read_manifest(body, "S3Uri")
    assert str(caught.value).startswith(
        f"the manifest named by S3Uri: entry 3 ({json.dumps(entry)}) {problem}"
    )


def test_manifest_names_with_dots_inside_segments_are_fine() -> None:
    body = json.dumps([{"prefix": "s3://b/p/"}, "..a", "a./b", ".hidden/c..", "d/"]).encode()
    assert read_manifest(body, "S3Uri") == [
        "s3://b/p/..a",
        "s3://b/p/a./b",
        "s3://b/p/.hidden/c..",
        "s3://b/p/d/",
    ]
