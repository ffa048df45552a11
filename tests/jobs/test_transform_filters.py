"""SageMaker's JSONPath subset (inclusive slices), CSV rows as arrays, and the JoinSource rules."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.jobs.transform.filters import (
    FilterError,
    RowError,
    format_of,
    join,
    parse_path,
    parse_row,
    parse_rows,
    render_row,
    render_rows,
    select,
    select_all,
)

ROW = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]
DOC = {
    "id": 7,
    "features": [1.5, 2, 3],
    "meta": {"source": "s3", "tags": ["a", "b"]},
    "items": [{"k": 1, "v": "x"}, {"k": 2}, {"k": 3, "v": "z"}],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", ROW),
        ("$[0]", "c0"),
        ("$[6]", "c6"),
        ("$[-1]", "c6"),
        ("$[-7]", "c0"),
        ("$[1,3,5]", ["c1", "c3", "c5"]),
        ("$[5,1]", ["c5", "c1"]),
        # SageMaker's slices include both ends: $[1:4] is the 2nd through the 5th column.
        ("$[1:4]", ["c1", "c2", "c3", "c4"]),
        ("$[2:2]", ["c2"]),
        ("$[1:]", ["c1", "c2", "c3", "c4", "c5", "c6"]),
        ("$[5:]", ["c5", "c6"]),
        ("$[:5]", ["c0", "c1", "c2", "c3", "c4", "c5"]),
        ("$[:]", ROW),
        ("$[0,5:]", ["c0", "c5", "c6"]),
        ("$[-2:]", ["c5", "c6"]),
        ("$[:-2]", ["c0", "c1", "c2", "c3", "c4", "c5"]),
        ("$[4:100]", ["c4", "c5", "c6"]),
        ("$[9:]", []),
        ("$[*]", ROW),
        ("$[ 1 , 2 ]", ["c1", "c2"]),
    ],
)
def test_index_paths_on_a_row(path: str, expected: Any) -> None:
    assert select(parse_path(path), ROW) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.id", 7),
        ("$['id']", 7),
        ('$["id"]', 7),
        ("$.features", [1.5, 2, 3]),
        ("$.features[0]", 1.5),
        ("$.features[1:]", [2, 3]),
        ("$.meta.source", "s3"),
        ("$['meta']['source']", "s3"),
        ("$.meta['source']", "s3"),
        ("$.meta.tags[-1]", "b"),
        ("$['id','features']", {"id": 7, "features": [1.5, 2, 3]}),
        ("$['features', 'id']", {"features": [1.5, 2, 3], "id": 7}),
        ("$.meta.['source','tags']", {"source": "s3", "tags": ["a", "b"]}),
        ("$.meta.*", ["s3", ["a", "b"]]),
        ("$.items[*].k", [1, 2, 3]),
        # Inside a list, an element without the attribute is skipped (Jayway's indefinite paths).
        ("$.items[*].v", ["x", "z"]),
        ("$.items[0,2].v", ["x", "z"]),
        ("$.items[1]", {"k": 2}),
        ("$.items[*]['k']", [1, 2, 3]),
    ],
)
def test_paths_on_an_object(path: str, expected: Any) -> None:
    assert select(parse_path(path), DOC) == expected


def test_root_and_index_only() -> None:
    assert parse_path("$").is_root
    assert not parse_path("$[0]").is_root
    assert parse_path("$[0,2:]").index_only
    assert parse_path("$[*]").index_only
    assert not parse_path("$.id").index_only
    assert not parse_path("$['id']").index_only


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("id", "must start with '$'"),
        ("", "must start with '$'"),
        ("$.", "expected a name after '.'"),
        ("$[", "never closed"),
        ("$[1", "never closed"),
        ("$[]", "empty brackets"),
        ("$[a]", "'a' is not an index"),
        ("$[1:2:1]", "is not a slice"),
        ("$[x:2]", "is not a slice"),
        ("$['a',b]", "must all be quoted"),
        ("$['a' 'b']", "expected ',' or ']'"),
        ("$['a',]", "must all be quoted"),
        ("$id", "unexpected 'i'"),
        ("$..id", "expected a name after '.'"),
        ("$[?(@.a)]", "'?(@.a)' is not an index"),
        ("$.a[(@.length-1)]", "is not an index"),
    ],
)
def test_bad_paths(path: str, fragment: str) -> None:
    with pytest.raises(FilterError, match=None) as caught:
        parse_path(path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("$[7]", ROW, "index 7 is outside the 7 elements"),
        ("$[-8]", ROW, "index -8 is outside the 7 elements"),
        ("$[0,9]", ROW, "index 9 is outside"),
        ("$.id", ROW, "'id' needs an object, found an array"),
        ("$.missing", DOC, "has no attribute 'missing'"),
        ("$['id','nope']", DOC, "has no attribute 'nope'"),
        ("$[0]", DOC, "indexes need an array, found an object"),
        ("$.id.*", DOC, "'*' needs an object or an array, found a int"),
        ("$.meta.source[0]", DOC, "found a string"),
        ("$.x", None, "found null"),
    ],
)
def test_selections_that_do_not_fit(path: str, value: Any, fragment: str) -> None:
    with pytest.raises(FilterError) as caught:
        select(parse_path(path), value)
    assert fragment in str(caught.value)
    assert repr(path) in str(caught.value)


@pytest.mark.parametrize(
    ("mime", "fmt"),
    [
        ("text/csv", "csv"),
        ("TEXT/CSV; charset=utf-8", "csv"),
        ("application/json", "json"),
        ("application/jsonlines", "jsonlines"),
        ("application/x-jsonlines", "jsonlines"),
        ("application/jsonl", "jsonlines"),
        ("application/x-recordio-protobuf", None),
        ("image/jpeg", None),
        ("", None),
        (None, None),
    ],
)
def test_formats(mime: str | None, fmt: str | None) -> None:
    assert format_of(mime) == fmt


def test_csv_rows_follow_rfc_4180() -> None:
    assert parse_row('1,"a,b",  3,"say ""hi"""', "csv") == ["1", "a,b", "  3", 'say "hi"']
    assert parse_row("", "csv") == []
    assert render_row(["1", "a,b", 'say "hi"', None, 2.5], "csv") == '1,"a,b","say ""hi""",,2.5'
    assert render_row("only", "csv") == "only"
    with pytest.raises(FilterError, match="array of columns"):
        render_row({"a": 1}, "csv")


def test_json_rows_are_compact_and_keep_unicode() -> None:
    assert parse_row('{"a": [1, 2.5], "é": null}', "json") == {"a": [1, 2.5], "é": None}
    assert render_row({"a": [1, 2.5], "é": None}, "jsonlines") == '{"a":[1,2.5],"é":null}'
    assert render_row("x", "json") == '"x"'


def test_join_rules() -> None:
    assert join(["1", "2", "3"], ["0.9"], "csv") == ["1", "2", "3", "0.9"]
    assert join(["1"], ["0.1", "0.9"], "csv") == ["1", "0.1", "0.9"]
    assert join(["1"], "0.5", "csv") == ["1", "0.5"]
    assert join({"key": 1}, {"label": 1}, "json") == {"key": 1, "SageMakerOutput": {"label": 1}}
    # The reserved attribute is overwritten, as the developer guide warns.
    assert join({"SageMakerOutput": 0}, 1, "jsonlines") == {"SageMakerOutput": 1}
    assert join([1, 2], [0.3], "json") == {"SageMakerInput": [1, 2], "SageMakerOutput": [0.3]}
    assert join("text", 4, "jsonlines") == {"SageMakerInput": "text", "SageMakerOutput": 4}


def test_many_csv_rows_at_once() -> None:
    assert parse_rows(["1,2", 'a,"b""x"', ""], "csv") == [["1", "2"], ["a", 'b"x'], []]
    assert render_rows([["a", "b,c"], "x", [None, 1]], "csv") == ['a,"b,c"', "x", ",1"]
    assert render_rows([{"a": 1}, [1]], "json") == ['{"a":1}', "[1]"]
    assert render_rows([], "csv") == []


def test_an_unclosed_quote_does_not_swallow_the_next_line() -> None:
    with pytest.raises(RowError) as caught:
        parse_rows(["1,2", 'a,"b', 'c"'], "csv")
    assert caught.value.index == 1
    assert str(caught.value) == "not valid CSV: unexpected end of data"
    with pytest.raises(ValueError, match="unexpected end of data"):
        parse_row('a,"b', "csv")


def test_row_errors_give_the_position() -> None:
    with pytest.raises(RowError) as caught:
        parse_rows(["1", "{"], "jsonlines")
    assert caught.value.index == 1
    assert str(caught.value).startswith("not valid JSON Lines: Expecting property name")
    with pytest.raises(RowError) as caught:
        render_rows([["a"], {"x": 1}], "csv")
    assert caught.value.index == 1
    assert "a CSV row can only hold an array of columns" in str(caught.value)
    with pytest.raises(RowError) as caught:
        select_all(parse_path("$[2]"), [["a", "b", "c"], ["d"]])
    assert caught.value.index == 1
    assert str(caught.value) == "JSONPath '$[2]': index 2 is outside the 1 elements of the array"
    rows = [["a"], ["b"]]
    assert select_all(parse_path("$"), rows) is rows
