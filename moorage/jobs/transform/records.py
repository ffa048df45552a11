"""Batch transform's data handling, bytes in and bytes out: one input object becomes the requests
POSTed to /invocations, and their responses become the output object.

The pipeline follows SageMaker's: decompress (CompressionType), split into records (SplitType),
apply InputFilter to each record, pack records into requests (BatchStrategy under MaxPayloadInMB);
then, on the way back, split each response into per-record outputs when a join or an OutputFilter
needs them, join with the input (JoinSource), apply OutputFilter and assemble (AssembleWith), in
input order. The job runner does the I/O and the HTTP; nothing here blocks or touches the network.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.jobs.transform import filters
from moorage.jobs.transform.filters import FilterError, Format, JsonError, JsonPath, RowError
from moorage.jobs.transform.framing import Framed, FramingError, split_recordio, split_tfrecord

SPLIT_TYPES = ("None", "Line", "RecordIO", "TFRecord")
BATCH_STRATEGIES = ("MultiRecord", "SingleRecord")
COMPRESSION_TYPES = ("None", "Gzip")
ASSEMBLE_WITH = ("None", "Line")
JOIN_SOURCES = ("None", "Input")
# What a Gzip object may decompress to: a bound on the memory one object takes, far above what a
# transform input usually holds, while a small "gzip bomb" cannot exhaust the server.
MAX_DECOMPRESSED_BYTES = 1024**3
_GZIP_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class TransformSettings:
    """What a transform job says about its data; built once per job by from_job."""

    split_type: str
    batch_strategy: str
    max_payload_bytes: int
    compression: str
    assemble_with: str
    content_type: str | None
    accept: str | None
    input_filter: str
    output_filter: str
    join_source: str

    @classmethod
    def from_job(cls, job: Mapping[str, Any], max_payload_mb: int, batch_strategy: str) -> TransformSettings:
        """From the CreateTransformJob members; MaxPayloadInMB and BatchStrategy come resolved (the
        request's value, else the container's /execution-parameters, else the defaults)."""
        source = job.get("TransformInput") or {}
        output = job.get("TransformOutput") or {}
        processing = job.get("DataProcessing") or {}
        return cls(
            split_type=source.get("SplitType") or "None",
            batch_strategy=batch_strategy,
            max_payload_bytes=max_payload_mb * 1024 * 1024,
            compression=source.get("CompressionType") or "None",
            assemble_with=output.get("AssembleWith") or "None",
            content_type=source.get("ContentType") or None,
            accept=output.get("Accept") or None,
            input_filter=processing.get("InputFilter") or "$",
            output_filter=processing.get("OutputFilter") or "$",
            join_source=processing.get("JoinSource") or "None",
        )


class RecordError(Exception):
    """Why an object cannot be transformed; str() names the record (1-based, within the object)."""

    def __init__(self, message: str, record: int | None = None, last: int | None = None) -> None:
        where = ""
        if record is not None:
            where = (
                f"records {record}-{last}: " if last is not None and last != record else f"record {record}: "
            )
        super().__init__(where + message)
        self.record = record


@dataclass(frozen=True)
class Request:
    """One POST to /invocations: its body and the records (by index in the object) it carries."""

    body: bytes
    first: int
    count: int


def check_join(settings: TransformSettings) -> str | None:
    """What is wrong with JoinSource Input for these settings (None when the join can be done)."""
    if settings.join_source == "None":
        return None
    if settings.join_source not in JOIN_SOURCES:
        return f"DataProcessing.JoinSource must be Input or None, not {settings.join_source!r}"
    if settings.split_type not in ("None", "Line") or settings.assemble_with != settings.split_type:
        return (
            f"JoinSource Input needs TransformOutput.AssembleWith to match TransformInput.SplitType "
            f"(both Line, or both None); they are {settings.assemble_with} and {settings.split_type}"
        )
    if filters.format_of(settings.content_type) is None:
        return (
            "JoinSource Input needs TransformInput.ContentType text/csv, application/json or "
            f"application/jsonlines, not {settings.content_type!r}"
        )
    if _media(settings.accept) != _media(settings.content_type):
        return (
            f"JoinSource Input needs TransformOutput.Accept to equal TransformInput.ContentType; they are "
            f"{settings.accept!r} and {settings.content_type!r}"
        )
    return None


def check_settings(settings: TransformSettings) -> str | None:
    """Every problem found before any data is read: enumerations, filters and the join rules."""
    for name, value, allowed in (
        ("TransformInput.SplitType", settings.split_type, SPLIT_TYPES),
        ("BatchStrategy", settings.batch_strategy, BATCH_STRATEGIES),
        ("TransformInput.CompressionType", settings.compression, COMPRESSION_TYPES),
        ("TransformOutput.AssembleWith", settings.assemble_with, ASSEMBLE_WITH),
    ):
        if value not in allowed:
            return f"{name} must be one of {', '.join(allowed)}, not {value!r}"
    if settings.max_payload_bytes < 0:
        return "MaxPayloadInMB must not be negative"
    for member, text, mime, mime_name in (
        (
            "DataProcessing.InputFilter",
            settings.input_filter,
            settings.content_type,
            "TransformInput.ContentType",
        ),
        (
            "DataProcessing.OutputFilter",
            settings.output_filter,
            _output_type(settings),
            "TransformOutput.Accept",
        ),
    ):
        try:
            path = filters.parse_path(text)
        except FilterError as exc:
            return f"{member}: {exc}"
        if path.is_root:
            continue
        fmt = filters.format_of(mime)
        if fmt is None:
            return (
                f"{member} {text!r} needs {mime_name} text/csv, application/json or application/jsonlines "
                f"(the formats SageMaker can filter), not {mime!r}"
            )
        if settings.split_type in ("RecordIO", "TFRecord") and member.endswith("InputFilter"):
            return f"{member} applies to CSV and JSON records, not to SplitType {settings.split_type}"
        if fmt == "csv" and not path.index_only:
            return (
                f"{member} {text!r}: a CSV row is an array of columns, so only index paths "
                "such as $[0] or $[1:] apply"
            )
    return check_join(settings)


def requests_for(
    data: bytes, settings: TransformSettings, max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES
) -> tuple[list[bytes], list[Request]]:
    """Decompress, split into records, apply InputFilter per record and pack into requests.

    Returns the records as they lie in the decompressed object (what JoinSource Input joins with)
    and the requests, in order. A record (or, for SplitType None, the object) over MaxPayloadInMB
    raises RecordError, as does a record the InputFilter cannot select from, or a Gzip object that
    decompresses to more than `max_decompressed_bytes`."""
    problem = check_settings(settings)
    if problem:
        raise RecordError(problem)
    data = _decompress(data, settings.compression, max_decompressed_bytes)
    in_path = filters.parse_path(settings.input_filter)
    fmt = filters.format_of(settings.content_type)
    records: list[bytes]
    parts: list[bytes]
    if settings.split_type in ("RecordIO", "TFRecord"):
        framed = _split_binary(data, settings.split_type)
        records = [record.framed for record in framed]
        single = settings.batch_strategy == "SingleRecord"
        parts = [record.payload if single else record.framed for record in framed]
    else:
        records = _split_lines(data) if settings.split_type == "Line" else ([data] if data else [])
        parts = records
        if not in_path.is_root:
            assert fmt is not None  # check_settings refuses a filter without a format
            parts = _filter_records(records, in_path, fmt)
    return records, _pack(parts, settings)


def assemble(
    records: list[bytes], requests: list[Request], responses: list[bytes], settings: TransformSettings
) -> bytes:
    """The output object: per-record outputs (when a join or OutputFilter needs them) joined with the
    input, filtered and assembled with AssembleWith, in input order.

    Without a join or an OutputFilter each response is one output unit, untouched; AssembleWith Line
    ends each unit with a newline (unless it already ends with one), None concatenates them."""
    if len(responses) != len(requests):
        raise RecordError(f"{len(requests)} requests were sent but {len(responses)} responses came back")
    out_path = filters.parse_path(settings.output_filter)
    joining = settings.join_source == "Input"
    line = settings.assemble_with == "Line"
    if not joining and out_path.is_root:
        return b"".join(_terminated(response) if line else response for response in responses)
    fmt = filters.format_of(_output_type(settings))
    if fmt is None:
        raise RecordError(check_settings(settings) or "the output format cannot be filtered")
    outputs: list[Any] = []
    numbers: list[int] = []
    batched = settings.batch_strategy == "MultiRecord" and settings.split_type != "None"
    for request, response in zip(requests, responses, strict=True):
        split = _split_response(response, request, fmt, batched)
        outputs.extend(split)
        numbers.extend(range(request.first + 1, request.first + 1 + len(split)))
    texts = [index for index, output in enumerate(outputs) if isinstance(output, bytes)]
    rows: list[list[Any]] = [[output] for output in outputs]
    parsed = _record_rows([outputs[i] for i in texts], fmt, "the response", [numbers[i] for i in texts])
    for index, found in zip(texts, parsed, strict=True):
        rows[index] = found
    if joining:
        sources = _record_rows([records[n - 1] for n in numbers], fmt, "the input", numbers)
        for index, (source, output) in enumerate(zip(sources, rows, strict=True)):
            if len(source) != len(output):
                raise RecordError(
                    f"the input has {len(source)} rows but its response has {len(output)}; "
                    "JoinSource Input pairs them one to one",
                    numbers[index],
                )
            rows[index] = [filters.join(s, o, fmt) for s, o in zip(source, output, strict=True)]
    flat, owners = _flatten(rows)
    rendered = _select_render(out_path, flat, fmt, "OutputFilter", [numbers[owner] for owner in owners])
    endings = [
        b"\n" if line or (isinstance(output, bytes) and output.endswith(b"\n")) else b"" for output in outputs
    ]
    return b"".join(_regroup(rendered, rows, endings))


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _output_type(settings: TransformSettings) -> str | None:
    """The format of what the model returns: Accept, or the input's ContentType when Accept is unset."""
    return settings.accept or settings.content_type


def _decompress(data: bytes, compression: str, limit: int) -> bytes:
    """CompressionType Gzip: every member (gunzip reads concatenated members as one stream, zero
    padding between them allowed), refused once the output passes `limit` bytes. The input is fed
    a chunk at a time, so the rest of the object is never copied once per member."""
    if compression != "Gzip":
        return data
    pieces: list[bytes] = []
    size = 0
    view = memoryview(data)
    offset = 0
    members = 0
    stream: zlib._Decompress | None = None  # the current member's decompressor
    pending = b""
    try:
        while True:
            if not pending:
                if offset >= len(view):
                    break
                pending = bytes(view[offset : offset + _GZIP_CHUNK])
                offset += len(pending)
            if stream is None:
                if members:
                    pending = pending.lstrip(b"\0")
                    if not pending:
                        continue
                stream = zlib.decompressobj(wbits=31)
                members += 1
            piece = stream.decompress(pending, limit - size + 1)
            size += len(piece)
            if size > limit:
                raise RecordError(
                    f"the object decompresses to more than {limit:,} bytes, the most one Gzip object "
                    "may hold; split the data into several smaller objects (each is transformed on its own)"
                )
            pieces.append(piece)
            if stream.eof:
                pending, stream = stream.unused_data, None
            else:
                pending = stream.unconsumed_tail
    except zlib.error as exc:
        raise RecordError(f"the object is not valid gzip (CompressionType is Gzip): {exc}") from None
    if stream is not None:
        raise RecordError(
            "the object is not valid gzip (CompressionType is Gzip): it ends before the end of its "
            "compressed data (a truncated upload?)"
        )
    return b"".join(pieces)


def _split_lines(data: bytes) -> list[bytes]:
    """SplitType Line: each line with its own "\\n" (a "\\r" before it stays part of the line, and
    the last line may have none); blank lines are not records."""
    pieces = data.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]] + [pieces[-1]]
    return [line for line in lines if line not in (b"", b"\r", b"\n", b"\r\n")]


def _split_binary(data: bytes, split_type: str) -> list[Framed]:
    try:
        return split_recordio(data) if split_type == "RecordIO" else split_tfrecord(data)
    except FramingError as exc:
        raise RecordError(str(exc), exc.record) from None


def _filter_records(records: list[bytes], path: JsonPath, fmt: Format) -> list[bytes]:
    """InputFilter on each record, keeping its line ending; each row of a multi-row record is filtered."""
    bodies: list[bytes] = []
    endings: list[bytes] = []
    for record in records:
        body, ending = _strip_ending(record)
        bodies.append(body)
        endings.append(ending)
    rows = _record_rows(bodies, fmt, "the input", range(1, len(records) + 1))
    flat, owners = _flatten(rows)
    rendered = _select_render(path, flat, fmt, "InputFilter", [owner + 1 for owner in owners])
    return _regroup(rendered, rows, endings)


def _select_render(path: JsonPath, rows: list[Any], fmt: Format, which: str, numbers: list[int]) -> list[str]:
    """The filter (`which`: InputFilter or OutputFilter) applied to each row and written back;
    `numbers` are the rows' record numbers, for messages."""
    try:
        selected = filters.select_all(path, rows)
    except RowError as exc:
        raise RecordError(f"DataProcessing.{which}: {exc}", numbers[exc.index]) from None
    try:
        return filters.render_rows(selected, fmt)
    except RowError as exc:
        # In CSV the filter selected an object; in JSON the data holds what JSON cannot (1e400).
        data = "the input" if which == "InputFilter" else "the output"
        about = f"DataProcessing.{which}:" if fmt == "csv" else data
        raise RecordError(f"{about} {exc}", numbers[exc.index]) from None


def _strip_ending(record: bytes) -> tuple[bytes, bytes]:
    for ending in (b"\r\n", b"\n"):
        if record.endswith(ending):
            return record[: -len(ending)], ending
    return record, b""


def _record_rows(datas: list[bytes], fmt: Format, what: str, numbers: Sequence[int]) -> list[list[Any]]:
    """The values in each record (`numbers` are the records' numbers, for messages). A record is
    usually one line, and all such lines are parsed together; a CSV or JSON Lines record may span
    several lines (SplitType None); an application/json record is one JSON value, or JSON Lines."""
    rows: list[list[Any]] = [[] for _ in datas]
    lines: list[str] = []
    owners: list[int] = []
    for index, data in enumerate(datas):
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise RecordError(
                f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})", numbers[index]
            ) from None
        line = text.rstrip("\n").rstrip("\r")
        if "\n" in line:
            rows[index] = _multi_line_rows(text, fmt, what, numbers[index])
        else:  # a record is a row, even an empty response
            lines.append(line)
            owners.append(index)
    try:
        values = filters.parse_rows(lines, fmt)
    except RowError as exc:
        raise RecordError(f"{what} is {exc}", numbers[owners[exc.index]]) from None
    for owner, value in zip(owners, values, strict=True):
        rows[owner] = [value]
    return rows


def _multi_line_rows(text: str, fmt: Format, what: str, number: int) -> list[Any]:
    """An application/json record is one JSON value (pretty-printed, say), else JSON Lines; CSV and
    JSON Lines records are one row per line."""
    whole: JsonError | None = None
    if fmt == "json":
        try:
            return [filters.load_json(text)]
        except JsonError as exc:
            whole = exc
    lines = [line.rstrip("\r") for line in text.split("\n")]
    try:
        # Blank lines are not rows; in JSON, neither are lines of whitespace.
        return filters.parse_rows([line for line in lines if (line if fmt == "csv" else line.strip())], fmt)
    except RowError as exc:
        if whole is not None and not str(whole).startswith("Extra data"):
            # Not several values, one per line: the document's own error says where it went wrong.
            raise RecordError(f"{what} is not valid JSON: {whole}", number) from None
        raise RecordError(f"{what} is {exc}", number) from None


def _flatten(rows: list[list[Any]]) -> tuple[list[Any], list[int]]:
    """All rows in one list, and the index of the record each came from."""
    flat: list[Any] = []
    owners: list[int] = []
    for index, record_rows in enumerate(rows):
        flat.extend(record_rows)
        owners.extend([index] * len(record_rows))
    return flat, owners


def _regroup(rendered: list[str], rows: list[list[Any]], endings: list[bytes]) -> list[bytes]:
    """Each record's rendered rows back together (one per line), followed by its ending."""
    out: list[bytes] = []
    position = 0
    for record_rows, ending in zip(rows, endings, strict=True):
        count = len(record_rows)
        text = rendered[position] if count == 1 else "\n".join(rendered[position : position + count])
        out.append(text.encode() + ending)
        position += count
    return out


def _split_response(response: bytes, request: Request, fmt: Format, batched: bool) -> list[bytes | Any]:
    """One output per record. Unless `batched` (MultiRecord with SplitType Line, RecordIO or
    TFRecord), a request carries one record and the response is its output, whole. A batched
    response is split by one rule whatever the number of records in the request, one included, so an
    output never depends on how records were packed: for JSON, an array with exactly one element per
    record gives the elements; otherwise there must be one line per record."""
    if not batched:
        return [response]
    first, last = request.first + 1, request.first + request.count
    if fmt != "csv":
        try:
            value = filters.load_json(response)
        except JsonError:
            value = None
        if isinstance(value, list) and len(value) == request.count:
            return list(value)
    pieces = response.split(b"\n")
    lines = [line for line in [*(p + b"\n" for p in pieces[:-1]), pieces[-1]] if line.strip()]
    if len(lines) == request.count:
        return list(lines)
    these = "this record" if request.count == 1 else f"these {request.count} records"
    raise RecordError(
        f"the response to {these} has {len(lines)} lines; it needs one line per record (or, for JSON, "
        "an array with one element per record) so each can be joined or filtered",
        first,
        last,
    )


def _pack(parts: list[bytes], settings: TransformSettings) -> list[Request]:
    """BatchStrategy: SingleRecord (or SplitType None) sends each record alone; MultiRecord sends as
    many consecutive records as fit under MaxPayloadInMB (0: no limit), concatenated as they lie."""
    limit = settings.max_payload_bytes
    for number, part in enumerate(parts, 1):
        if limit and len(part) > limit:
            what = "the object" if settings.split_type == "None" else "the record"
            raise RecordError(
                f"{what} is {len(part)} bytes, over MaxPayloadInMB ({limit // (1024 * 1024)} MB = {limit} "
                "bytes); raise MaxPayloadInMB or split the data into smaller records (SplitType)",
                number,
            )
    if settings.batch_strategy == "SingleRecord" or settings.split_type == "None":
        return [Request(part, index, 1) for index, part in enumerate(parts)]
    requests: list[Request] = []
    batch: list[bytes] = []
    size = 0
    for index, part in enumerate(parts):
        if batch and limit and size + len(part) > limit:
            requests.append(Request(b"".join(batch), index - len(batch), len(batch)))
            batch, size = [], 0
        batch.append(part)
        size += len(part)
    if batch:
        requests.append(Request(b"".join(batch), len(parts) - len(batch), len(batch)))
    return requests


def _terminated(unit: bytes) -> bytes:
    return unit if unit.endswith(b"\n") else unit + b"\n"
