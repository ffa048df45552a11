"""DataProcessing for batch transform: SageMaker's JSONPath subset, CSV rows as arrays, and the join.

SageMaker supports only part of JSONPath (the developer guide's "Supported JSONPath Operators"):
``$``, ``.name``, ``*``, ``['a','b']``, ``[1]``/``[1,3,-1]`` and ``[start:end]``. Its slices are
INCLUSIVE (``$[1:4]`` is elements 1, 2, 3 and 4), unlike Python's and most JSONPath libraries', so
the path is evaluated here rather than by a library. A CSV row is taken as an array of its columns,
so only index paths apply to CSV. Everything here works on parsed values; records.py deals in bytes.

All JSON is read by load_json and written by render_rows, so what the jobs accept and write is strict
JSON whatever Python's json module would let through (NaN, Infinity, lone surrogates, deep nesting).
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["csv", "json", "jsonlines"]

# A CSV field may be as long as a record (MaxPayloadInMB goes up to 100 MB, and SplitType None has no
# limit); the csv module's default refuses fields over 128 KiB. Raised for the process, never lowered.
CSV_FIELD_LIMIT = 2**31 - 1
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))

_FORMATS: dict[str, Format] = {
    "text/csv": "csv",
    "application/json": "json",
    "application/jsonlines": "jsonlines",
    "application/x-jsonlines": "jsonlines",
    "application/jsonl": "jsonlines",
}


class FilterError(ValueError):
    """A path that cannot be parsed, or a record it cannot select from; str() says which and why."""


class RowError(FilterError):
    """A row that cannot be read, selected from or written; ``index`` is its place in the list given."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


class JsonError(ValueError):
    """Text that is not JSON (or not JSON that can be read back: NaN, Infinity, nesting deeper than
    Python's recursion limit); str() says why."""


@dataclass(frozen=True)
class RawNumber:
    """A JSON integer longer than Python converts (sys.get_int_max_str_digits(), 4300 digits by
    default), kept as its text and written back unchanged: valid JSON stays valid."""

    text: str


def _refuse_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON value (JSON has no NaN or Infinity)")


def _long_int(text: str) -> int | RawNumber:
    try:
        return int(text)
    except ValueError:  # over the digit limit
        return RawNumber(text)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
# Only used when _DECODER meets an over-long integer: a parse_int hook slows every integer down.
_LONG_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_long_int)


def load_json(text: str | bytes) -> Any:
    """One JSON document (bytes as json.loads reads them: UTF-8, -16 or -32). Every failure is a
    JsonError, including nesting too deep for the parser's recursion (RecursionError otherwise)."""
    try:
        if isinstance(text, bytes):
            text = text.decode(json.detect_encoding(text))
        try:
            return _DECODER.decode(text)
        except (JsonError, json.JSONDecodeError):
            raise
        except ValueError:  # an integer over Python's digit limit for int()
            return _LONG_DECODER.decode(text)
    except JsonError:
        raise
    except UnicodeDecodeError as exc:
        raise JsonError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise JsonError("nested too deeply to read (over about a thousand levels)") from None
    except ValueError as exc:
        raise JsonError(str(exc)) from None


def format_of(content_type: str | None) -> Format | None:
    """The format DataProcessing can read for a MIME type (parameters such as charset ignored)."""
    if not content_type:
        return None
    return _FORMATS.get(content_type.split(";", 1)[0].strip().lower())


@dataclass(frozen=True)
class Slice:
    """``[start:end]``, both ends included; None is the first or the last element."""

    start: int | None
    end: int | None


@dataclass(frozen=True)
class Step:
    """One step of a path: ``kind`` is "name", "names", "wildcard" or "indexes"; ``definite`` when it
    selects one value (else a list of values)."""

    kind: str
    names: tuple[str, ...] = ()
    indexes: tuple[int | Slice, ...] = ()
    definite: bool = field(init=False)

    def __post_init__(self) -> None:
        one_index = self.kind == "indexes" and len(self.indexes) == 1 and isinstance(self.indexes[0], int)
        object.__setattr__(self, "definite", self.kind in ("name", "names") or one_index)


@dataclass(frozen=True)
class JsonPath:
    """A parsed filter; ``text`` is what the user wrote (for messages)."""

    text: str
    steps: tuple[Step, ...]

    @property
    def is_root(self) -> bool:
        """``$``: the filter that selects everything, so records pass through untouched."""
        return not self.steps

    @property
    def index_only(self) -> bool:
        """Whether the path can apply to a CSV row (an array of columns)."""
        return all(step.kind in ("indexes", "wildcard") for step in self.steps)


_NAME = re.compile(r"[^.\[\]\s'\"]+")
_INT = re.compile(r"-?\d+")


def parse_path(text: str) -> JsonPath:
    """Parse one of SageMaker's JSONPath expressions; FilterError says where it went wrong."""
    if not text.startswith("$"):
        raise FilterError(f"JSONPath {text!r} must start with '$' (the record itself)")
    steps: list[Step] = []
    pos = 1
    while pos < len(text):
        if text.startswith(".[", pos):
            pos += 1
        if text[pos] == "[":
            close = _bracket_end(text, pos)
            steps.append(_bracket(text, text[pos + 1 : close].strip()))
            pos = close + 1
        elif text[pos] == ".":
            if text.startswith(".*", pos):
                steps.append(Step("wildcard"))
                pos += 2
                continue
            match = _NAME.match(text, pos + 1)
            if not match:
                raise FilterError(f"JSONPath {text!r}: expected a name after '.' at position {pos + 1}")
            steps.append(Step("name", names=(match.group(),)))
            pos = match.end()
        else:
            raise FilterError(f"JSONPath {text!r}: unexpected {text[pos]!r} at position {pos + 1}")
    return JsonPath(text, tuple(steps))


def _bracket_end(text: str, start: int) -> int:
    """The index of the ']' closing the bracket opened at `start` (quotes may hold ']')."""
    quote = ""
    for pos in range(start + 1, len(text)):
        char = text[pos]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "]":
            return pos
    raise FilterError(f"JSONPath {text!r}: '[' at position {start + 1} is never closed")


def _bracket(text: str, inner: str) -> Step:
    """The step a ``[...]`` selector stands for: names, ``*``, or indexes and inclusive slices."""
    if inner == "*":
        return Step("wildcard")
    if not inner:
        raise FilterError(f"JSONPath {text!r}: empty brackets '[]'")
    items = [item.strip() for item in inner.split(",")] if inner[0] not in "'\"" else _quoted(text, inner)
    if inner[0] in "'\"":
        return Step("name" if len(items) == 1 else "names", names=tuple(items))
    indexes: list[int | Slice] = []
    for item in items:
        if ":" in item:
            bounds = item.split(":")
            if len(bounds) != 2 or not all(not b.strip() or _INT.fullmatch(b.strip()) for b in bounds):
                raise FilterError(
                    f"JSONPath {text!r}: {item!r} is not a slice: write [start:end] with whole numbers "
                    "(no step); both ends are included"
                )
            start, end = (int(b) if b.strip() else None for b in bounds)
            indexes.append(Slice(start, end))
        elif _INT.fullmatch(item):
            indexes.append(int(item))
        else:
            raise FilterError(
                f"JSONPath {text!r}: {item!r} is not an index; brackets hold indexes like [0,2], slices "
                "like [1:3], '*', or quoted names like ['id','SageMakerOutput']"
            )
    return Step("indexes", indexes=tuple(indexes))


def _quoted(text: str, inner: str) -> list[str]:
    """The names in ``'a', "b"``; anything but quoted names separated by commas is refused."""
    names: list[str] = []
    pos = 0
    while True:
        quote = inner[pos] if pos < len(inner) else ""
        end = inner.find(quote, pos + 1) if quote else -1
        if quote not in ("'", '"') or end == -1:
            raise FilterError(f"JSONPath {text!r}: names in brackets must all be quoted, like ['a','b']")
        names.append(inner[pos + 1 : end])
        rest = inner[end + 1 :].lstrip()
        if not rest:
            return names
        if not rest.startswith(","):
            raise FilterError(f"JSONPath {text!r}: expected ',' or ']' after the name {names[-1]!r}")
        pos = len(inner) - len(rest[1:].lstrip())


_MISSING = object()


def select(path: JsonPath, value: Any) -> Any:
    """The part of `value` that `path` selects, as Jayway JsonPath shapes it: one value for a definite
    path, a list once a wildcard, slice or index list is crossed, an object for ``['a','b']``."""
    definite = True
    for step in path.steps:
        if definite:
            value = _apply(path, step, value, strict=True)
            definite = step.definite
            continue
        results: list[Any] = []
        for item in value:
            picked = _apply(path, step, item, strict=False)
            if picked is _MISSING:
                continue
            if step.definite:
                results.append(picked)
            else:
                results.extend(picked)
        value = results
    return value


def _apply(path: JsonPath, step: Step, value: Any, strict: bool) -> Any:
    """One step on one value; a value it does not fit raises (strict) or is skipped (inside a list)."""
    try:
        return _step(path, step, value)
    except FilterError:
        if strict:
            raise
        return _MISSING


def _step(path: JsonPath, step: Step, value: Any) -> Any:
    if step.kind == "wildcard":
        if isinstance(value, dict):
            return list(value.values())
        if isinstance(value, list):
            return list(value)
        raise FilterError(f"JSONPath {path.text!r}: '*' needs an object or an array, found {_kind(value)}")
    if step.kind in ("name", "names"):
        if not isinstance(value, dict):
            raise FilterError(
                f"JSONPath {path.text!r}: {step.names[0]!r} needs an object, found {_kind(value)}"
            )
        missing = [name for name in step.names if name not in value]
        if missing:
            raise FilterError(f"JSONPath {path.text!r}: the record has no attribute {missing[0]!r}")
        if step.kind == "name":
            return value[step.names[0]]
        return {name: value[name] for name in step.names}
    if not isinstance(value, list):
        raise FilterError(f"JSONPath {path.text!r}: indexes need an array, found {_kind(value)}")
    picked: list[Any] = []
    for index in step.indexes:
        if isinstance(index, int):
            position = index + len(value) if index < 0 else index
            if not 0 <= position < len(value):
                raise FilterError(
                    f"JSONPath {path.text!r}: index {index} is outside the {len(value)} elements of the array"
                )
            picked.append(value[position])
        else:
            picked.extend(value[_inclusive(index, len(value))])
    return picked[0] if step.definite else picked


def _inclusive(bounds: Slice, length: int) -> slice:
    """SageMaker's ``[start:end]`` (end included) as a Python slice, clamped to the array."""
    start = 0 if bounds.start is None else bounds.start
    end = length - 1 if bounds.end is None else bounds.end
    if start < 0:
        start += length
    if end < 0:
        end += length
    return slice(max(start, 0), max(min(end, length - 1) + 1, 0))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, RawNumber):
        return "an integer"
    return "null" if value is None else f"a {type(value).__name__}"


FORMAT_NAMES: dict[Format, str] = {"csv": "CSV", "json": "JSON", "jsonlines": "JSON Lines"}


def parse_row(text: str, fmt: Format) -> Any:
    """One line as a value: a CSV line is a list of its columns (strings, RFC 4180)."""
    if fmt != "csv":
        return load_json(text)
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as exc:
        raise ValueError(str(exc)) from None
    return rows[0] if rows else []


def parse_rows(texts: list[str], fmt: Format) -> list[Any]:
    """Many lines at once (one csv.reader for all CSV lines); RowError names the first bad one."""
    if fmt == "csv":
        try:
            rows = list(csv.reader(texts, strict=True))
        except csv.Error:
            rows = []
        # An unclosed quote makes the reader run into the next line: fewer rows than lines.
        if len(rows) == len(texts):
            return rows
    values: list[Any] = []
    for index, text in enumerate(texts):
        try:
            values.append(parse_row(text, fmt))
        except ValueError as exc:
            raise RowError(index, f"not valid {FORMAT_NAMES[fmt]}: {exc}") from None
    return values


def select_all(path: JsonPath, values: list[Any]) -> list[Any]:
    """`select` on each value; RowError names the first the path does not fit."""
    if path.is_root:
        return values
    selected: list[Any] = []
    for index, value in enumerate(values):
        try:
            selected.append(select(path, value))
        except FilterError as exc:
            raise RowError(index, str(exc)) from None
    return selected


def render_row(value: Any, fmt: Format) -> str:
    """The text of one value: a CSV line without its newline, or compact JSON."""
    return render_rows([value], fmt)[0]


def render_rows(values: list[Any], fmt: Format) -> list[str]:
    """The text of each value (one csv.writer for all CSV rows); RowError names an object in CSV, or
    a value JSON cannot hold."""
    if fmt != "csv":
        rendered: list[str] = []
        for index, value in enumerate(values):
            try:
                rendered.append(_render_json(value))
            except ValueError as exc:
                raise RowError(index, f"cannot be written as JSON: {exc}") from None
            except RecursionError:
                raise RowError(index, "cannot be written as JSON: it is nested too deeply") from None
        return rendered
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="")
    lengths: list[int] = []
    for index, value in enumerate(values):
        if isinstance(value, dict):
            raise RowError(index, "a CSV row can only hold an array of columns, and this selects an object")
        columns = value if isinstance(value, list) else [value]
        if None in columns:
            columns = ["" if column is None else column for column in columns]
        lengths.append(writer.writerow(columns))
    text = buffer.getvalue()
    rows: list[str] = []
    position = 0
    for length in lengths:
        rows.append(text[position : position + length])
        position += length
    return rows


# A RawNumber is encoded as a string holding this token (escaped by the encoder, as control characters
# are), then swapped for its digits; the random part keeps a string in the data from passing for one.
_RAW_MARK = f"\x00{secrets.token_hex(8)}:"
_RAW_KEY = _RAW_MARK[1:]
_RAW_QUOTED = re.compile(re.escape(json.dumps(_RAW_MARK)[:-1]) + r'([-0-9]+)"')


def _raw_default(value: object) -> str:
    if isinstance(value, RawNumber):
        return _RAW_MARK + value.text
    raise TypeError(f"{type(value).__name__} is not JSON")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_raw_default)
_ASCII_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_raw_default)


def _render_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept; a lone surrogate ("\\ud800" in the input: valid JSON, but not
    encodable as UTF-8) makes the whole value \\u-escaped instead. Infinity (a float beyond a double,
    such as 1e400) raises ValueError."""
    try:
        text = _ENCODER.encode(value)
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise ValueError(
                "a number is beyond a double's range (such as 1e400); write it within +-1.8e308"
            ) from None
        raise
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = _ASCII_ENCODER.encode(value)
    if _RAW_KEY in text:
        text = _RAW_QUOTED.sub(r"\1", text)
    return text


def join(source: Any, output: Any, fmt: Format) -> Any:
    """JoinSource Input: CSV columns appended to the input row; a JSON object gains SageMakerOutput;
    any other JSON input is wrapped as {"SageMakerInput": ..., "SageMakerOutput": ...}."""
    if fmt == "csv":
        return [*source, *(output if isinstance(output, list) else [output])]
    if isinstance(source, dict):
        return {**source, "SageMakerOutput": output}
    return {"SageMakerInput": source, "SageMakerOutput": output}
