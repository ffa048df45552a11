"""Hypothesis strategies for fuzzing the server's one HTTP port, derived from botocore's service models.

Why from the models: a value shaped like an operation's input gets past the JSON parser into the
validators and the resource handlers (names, ARNs, pagination tokens, nested configs), where random
bytes would stop at the first brace. Each value is then broken on purpose, at the leaves (wrong JSON
types, numbers out of range, text that breaks min/max/pattern/enum, lone surrogates) and at the
document level (missing or unknown members, nulls, duplicate keys, NaN and out-of-range literals,
invalid UTF-8, non-object and invalid JSON). Runtime requests and raw HTTP framing are built here too.

Safety: a fuzzed request must never deploy a model. Model data is always somewhere that does not exist
(an S3 endpoint nobody listens on, local paths that are not there; see `undeployable`), and the echo
endpoint the runtime fuzzing needs is named only by operations that cannot delete or replace it.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import botocore.session
from botocore.model import ServiceModel, Shape
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

# The resources the module fixture creates (a fresh state dir, so fixed names are safe).
ACCOUNT = "123456789012"
REGION = "us-west-2"  # the region RunningServer.client signs for, so the one its ARNs are minted in
ECHO = "fz-echo"  # InService echo endpoint; its model and endpoint config have the same name
DEAD = "fz-dead"  # a model whose data was deleted after CreateModel, and an endpoint config using it
SCRATCH = ("fz-a", "fz-b", "fz-c")  # names fuzzed operations create, describe and delete
DEAD_S3 = "s3://fz-bucket/model.tar.gz"  # the server's S3 endpoint points at a port nobody listens on
MISSING_DIR = "/nonexistent-moorage-fuzz"
MAX_BODY = 60 * 1024  # keep generated bodies small: big bodies belong in regression tests
RESERVED_KEYS = frozenset({"sleep", "exit"})  # the echo model would sleep or exit on these

_session = botocore.session.get_session()
SAGEMAKER: ServiceModel = _session.get_service_model("sagemaker")
RUNTIME: ServiceModel = _session.get_service_model("sagemaker-runtime")
IMPLEMENTED = (
    "CreateModel",
    "DescribeModel",
    "ListModels",
    "DeleteModel",
    "CreateEndpointConfig",
    "DescribeEndpointConfig",
    "ListEndpointConfigs",
    "DeleteEndpointConfig",
    "CreateEndpoint",
    "DescribeEndpoint",
    "ListEndpoints",
    "UpdateEndpoint",
    "DeleteEndpoint",
    "AddTags",
    "ListTags",
    "DeleteTags",
)
OTHER_OPERATIONS = tuple(sorted(set(SAGEMAKER.operation_names) - set(IMPLEMENTED)))
# Operations that cannot delete, replace or redeploy what they name: only these may name the echo resources.
HARMLESS = frozenset(op for op in IMPLEMENTED if op.startswith(("Describe", "List"))) | {
    "AddTags",
    "DeleteTags",
}


def arn(kind: str, name: str, region: str = REGION) -> str:
    return f"arn:aws:sagemaker:{region}:{ACCOUNT}:{kind}/{name}"


# ---------------------------------------------------------------------------------------------------
# JSON documents that json.dumps cannot write: verbatim tokens and repeated keys


@dataclass(frozen=True)
class Verbatim:
    """Written into the document as it is: NaN, 1e400, a 5000-digit integer, invalid UTF-8, deep nesting."""

    data: bytes

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 40 else self.data[:40] + b"...(%d bytes)" % len(self.data)
        return f"Verbatim({shown!r})"


@dataclass(frozen=True)
class Pairs:
    """A JSON object that may repeat a key (a dict cannot)."""

    items: tuple[tuple[str, Any], ...]


def encode_json(value: Any, *, ascii_only: bool = True) -> bytes:
    """`value` as JSON bytes. Lone surrogates come out as \\ud800 escapes (ascii_only) or as the
    CESU-style bytes b"\\xed\\xa0\\x80", which are not valid UTF-8 either."""
    out: list[bytes] = []
    _encode(value, ascii_only, out)
    return b"".join(out)


def _encode(value: Any, ascii_only: bool, out: list[bytes]) -> None:
    if isinstance(value, Verbatim):
        out.append(value.data)
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
    elif value is None or isinstance(value, bool | int | float):
        out.append(json.dumps(value).encode())
    elif isinstance(value, dict | Pairs):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        out.append(b"{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(b",")
            _encode(key, ascii_only, out)
            out.append(b":")
            _encode(item, ascii_only, out)
        out.append(b"}")
    elif isinstance(value, list | tuple):
        out.append(b"[")
        for i, item in enumerate(value):
            if i:
                out.append(b",")
            _encode(item, ascii_only, out)
        out.append(b"]")
    else:
        raise TypeError(f"cannot encode {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------
# Text and numbers that tend to break things

ODD_PIECES = (
    "\ud800",
    "\udfff",
    "\udc80",
    "\x00",
    "\x1f",
    "\x7f",
    "\u2028",
    "\ufeff",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "\u00e9",
    "%",
    "%00",
    "%ff",
    "%2F",
    "/",
    "\\",
    '"',
    "'",
    ":",
    "\n",
    "\r\n",
    "\t",
    " ",
    "..",
    "${x}",
    "*",
    "?",
    "#",
    "arn:aws:sagemaker:",
)
lone_surrogates = st.sampled_from(("\ud800", "\udbff\ud800", "a\udc00b", "\ud800\\u0000"))
odd_text: SearchStrategy[str] = st.lists(
    st.one_of(st.characters(), st.sampled_from(ODD_PIECES)), max_size=24
).map("".join)
NON_FINITE = st.sampled_from((Verbatim(b"NaN"), Verbatim(b"Infinity"), Verbatim(b"-Infinity")))
# Literals a double cannot hold, and integers past Python's 4300-digit int() limit.
BEYOND_DOUBLE = st.sampled_from(
    (
        Verbatim(b"1e400"),
        Verbatim(b"-1e400"),
        Verbatim(b"1e-400"),
        Verbatim(b"1" + b"0" * 400),
        Verbatim(b"-" + b"9" * 400),
        Verbatim(b"9" * 5000),
        Verbatim(b"1.0e99999999999999999999"),
        Verbatim(b"-0"),
        Verbatim(b"0.000000000000000000000000000001"),
    )
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=16),
)
json_values: SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, kind: Literal["array", "object"] = "array") -> Verbatim:
    """A value nested `depth` deep, written directly (no recursion in the test process)."""
    if kind == "array":
        return Verbatim(b"[" * depth + b"]" * depth)
    return Verbatim(b'{"a":' * depth + b"1" + b"}" * depth)


NESTING = st.builds(
    nested,
    st.one_of(st.integers(1, 64), st.sampled_from((999, 1000, 1500, 2000, 5000, 20000))),
    st.sampled_from(("array", "object")),
)


def _wrong_types(type_name: str) -> SearchStrategy[Any]:
    """A JSON value of any type but the one the shape asks for."""
    options: list[SearchStrategy[Any]] = [st.none(), NON_FINITE, BEYOND_DOUBLE]
    if type_name not in ("integer", "long", "float", "double", "timestamp"):
        options += [st.integers(-(2**64), 2**64), st.floats(allow_nan=False, allow_infinity=False)]
    if type_name not in ("string", "timestamp", "blob"):
        options.append(st.text(max_size=12))
    if type_name != "boolean":
        options.append(st.booleans())
    if type_name != "list":
        options.append(st.lists(json_scalars, max_size=3))
    if type_name not in ("structure", "map"):
        options.append(st.dictionaries(st.text(max_size=8), json_scalars, max_size=3))
    return st.one_of(options)


# ---------------------------------------------------------------------------------------------------
# Model patterns are Java regexes; these spellings let Python (and hypothesis.from_regex) read them.
# Unicode categories become a small subset of themselves: good enough to generate matching text.

_JAVA_SPELLINGS = (
    ("[\\p{Print}]", "[\\x20-\\x7E]"),
    ("\\p{Print}", "[\\x20-\\x7E]"),
    ("\\p{ASCII}", "[\\x00-\\x7F]"),
    ("\\p{Alnum}", "a-zA-Z0-9"),
    ("\\p{L}", "a-zA-Z\\u00e0-\\u00ff"),
    ("\\p{Z}", " "),
    ("\\p{N}", "0-9"),
    ("\\z", "\\Z"),
    ("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF"),
)


@functools.cache
def python_pattern(pattern: str) -> str | None:
    for java, python in _JAVA_SPELLINGS:
        pattern = pattern.replace(java, python)
    try:
        re.compile(pattern)
        st.from_regex(pattern, fullmatch=True).validate()
    except Exception:
        return None
    return pattern


def _fits(lo: int, hi: int) -> Callable[[str], bool]:
    return lambda text: lo <= len(text) <= hi


def valid_text(meta: dict[str, Any]) -> SearchStrategy[str]:
    """Text within min/max that matches the pattern and enum."""
    lo, hi = int(meta.get("min", 0)), int(meta.get("max", 256))
    if "enum" in meta:
        return st.sampled_from(meta["enum"])
    pattern = python_pattern(meta["pattern"]) if "pattern" in meta else None
    if pattern is not None:
        return st.from_regex(pattern, fullmatch=True).filter(_fits(lo, hi))
    return st.text(min_size=lo, max_size=max(lo, min(hi, lo + 40)))


def broken_text(meta: dict[str, Any]) -> SearchStrategy[str]:
    """Text that breaks min, max, pattern or enum (or just might: odd characters)."""
    lo, hi = int(meta.get("min", 0)), meta.get("max")
    options: list[SearchStrategy[str]] = [odd_text, lone_surrogates]
    if hi is not None and hi < 20000:
        options.append(st.builds(lambda n, c: c * (hi + n), st.integers(1, 40), st.sampled_from("a-\u00e9")))
    if lo > 0:
        options.append(st.just(""))
    if "enum" in meta:
        variants = (str.lower, str.upper, lambda s: s + " ", lambda s: " " + s, lambda s: s + "\ud800")
        options.append(
            st.builds(
                lambda value, change: change(value), st.sampled_from(meta["enum"]), st.sampled_from(variants)
            )
        )
    return st.one_of(options)


# ---------------------------------------------------------------------------------------------------
# Resource names, ARNs, pagination tokens and model data locations


def resource_names(harmless: bool) -> SearchStrategy[str]:
    """Names of resources that exist (sometimes), so Describe/Delete/Update reach real rows."""
    pool = (*SCRATCH, DEAD, ECHO) if harmless else (*SCRATCH, DEAD)
    return st.sampled_from(pool)


def resource_arns(harmless: bool) -> SearchStrategy[str]:
    """ARNs of resources that exist, and ARNs with odd text where the name, region, account or kind goes
    (a well-formed prefix with an odd name gets past the pattern to the lookup)."""
    kinds = ("model", "endpoint-config", "endpoint")
    names = (*SCRATCH, DEAD, ECHO) if harmless else (*SCRATCH, DEAD)
    real = st.builds(arn, st.sampled_from(kinds), st.sampled_from(names))
    odd_name = st.builds(
        arn, st.sampled_from(kinds), st.one_of(lone_surrogates, odd_text, st.just(ECHO.upper()))
    )
    odd_prefix = st.builds(
        lambda region, account, kind, name: f"arn:aws:sagemaker:{region}:{account}:{kind}/{name}",
        st.sampled_from((REGION, "us-east-1", "", "UPPER", "\u00e9u-west-1")),
        st.sampled_from((ACCOUNT, "000000000000", "1" * 11, "12345678901x")),
        st.sampled_from((*kinds, "notebook-instance", "", "Model", "model/model", "\ud800")),
        st.sampled_from(names),
    )
    return st.one_of(real, odd_name, odd_name, odd_prefix, odd_text.map(lambda t: "arn:aws:sagemaker:" + t))


def _token_json() -> SearchStrategy[bytes]:
    """What a decoded NextToken may hold: near-misses of the real ones ({"after": [order, key, name]},
    {"offset": n}) with odd types, and deep nesting."""
    orders = st.one_of(
        st.builds(list, st.tuples(st.sampled_from(("CreationTime", "Name", "Status")), st.booleans())),
        json_values,
    )
    after = st.builds(
        lambda order, key, name: {"after": [order, key, name]},
        orders,
        st.one_of(json_scalars, NON_FINITE, BEYOND_DOUBLE, json_values),
        st.one_of(st.text(max_size=10), json_values),
    )
    offset = st.builds(
        lambda n: {"offset": n}, st.one_of(json_scalars, NON_FINITE, BEYOND_DOUBLE, json_values)
    )
    deep = st.sampled_from((999, 1000, 2000, 3000))
    return st.one_of(
        st.one_of(after, offset, json_values).map(encode_json),
        st.builds(lambda n: b"[" * n + b"]" * n, deep),
        st.builds(lambda n: b'{"after":' + b"[" * n + b"]" * n + b"}", deep),
        st.builds(lambda n: b'{"offset":' + b'{"a":' * n + b"1" + b"}" * n + b"}", deep),
        NESTING.map(lambda value: value.data),
        st.binary(max_size=64),
    )


def next_tokens() -> SearchStrategy[str]:
    """Mostly base64 of JSON, as the server's own tokens are, so the decoded content reaches the listing."""
    return st.one_of(
        _token_json().map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
        _token_json().map(lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")),
        _token_json().map(lambda raw: base64.b64encode(raw).decode()),
        st.binary(max_size=48).map(lambda raw: base64.b64encode(raw).decode()),
        odd_text,
        lone_surrogates,
        st.sampled_from(("", "=", "====", "e30", "e30=", "null", "W10=", "bnVsbA==", "A" * 8193)),
    )


def model_data_locations() -> SearchStrategy[str]:
    """ModelDataUrl / S3Uri values that never reach model data (see `undeployable`)."""
    return st.one_of(
        st.just(DEAD_S3),
        st.from_regex(r"s3://[a-z0-9.\-]{3,20}/[a-zA-Z0-9/_.\-]{0,40}", fullmatch=True),
        st.builds(lambda t: f"file://{MISSING_DIR}/{quote(t.encode('utf-8', 'surrogatepass'))}", odd_text),
        st.builds(lambda t: f"{MISSING_DIR}/{t}", odd_text),
        st.builds(lambda t: f"fz-missing-{t}", odd_text),
        st.sampled_from(
            (
                "~fz-no-such-user/model.tar.gz",
                "https://127.0.0.1:9/model.tar.gz",
                "ftp://x/y",
                "s3://",
                "s3:///key",
                "file://",
                "file://host/x",
                "file://relative/x",
                "file:%2F%2F",
                "\x00",
                " ",
                f"{MISSING_DIR}/\x00",
                f"{MISSING_DIR}/" + "a" * 5000,
            )
        ),
    )


def _could_reach_data(text: str) -> bool:
    """Whether the server would find local model data at `text` (it shares this process's cwd and disk)."""
    value = text.strip()
    if not value or "\x00" in value:
        return False
    try:
        if "://" in value:
            if value.split("://", 1)[0].lower() != "file":
                return False  # s3:// goes to a dead endpoint; other schemes are refused
            value = unquote(urlsplit(value).path)
        if value.startswith("~"):
            return True
        return Path(value).absolute().exists()
    except Exception:
        return True  # not sure: treat as reachable


def undeployable(document: Any) -> Any:
    """CreateModel input whose containers can never start: each container that is an object gets model
    data that does not exist (a container without model data would start with an empty model directory)."""

    def container(value: Any) -> Any:
        # anything but an object is refused as it is (objects with repeated keys are only made top-level)
        if not isinstance(value, dict):
            return value
        fixed = {k: _model_data_member(k, v) for k, v in value.items()}
        if fixed.get("ModelDataUrl") is None and fixed.get("ModelDataSource") is None:
            fixed["ModelDataUrl"] = DEAD_S3
        return fixed

    def top(key: str, value: Any) -> Any:
        if key == "PrimaryContainer":
            return container(value)
        if key == "Containers" and isinstance(value, list):
            return [container(item) for item in value]
        return value

    if isinstance(document, Pairs):
        return Pairs(tuple((k, top(k, v)) for k, v in document.items))
    if isinstance(document, dict):
        return {k: top(k, v) for k, v in document.items()}
    return document


def _model_data_member(key: str, value: Any) -> Any:
    if key == "ModelDataUrl" and isinstance(value, str) and _could_reach_data(value):
        return DEAD_S3
    if key == "ModelDataSource":
        if not isinstance(value, dict):
            return value
        source = value.get("S3DataSource")
        if (
            isinstance(source, dict)
            and isinstance(source.get("S3Uri"), str)
            and _could_reach_data(source["S3Uri"])
        ):
            return {**value, "S3DataSource": {**source, "S3Uri": DEAD_S3}}
    return value


# ---------------------------------------------------------------------------------------------------
# Values for botocore shapes

_SOFT_DEPTH = 4  # below this, optional members are left out
_HARD_DEPTH = 8  # below this, structures are empty
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def shape_values(shape: Shape, *, harmless: bool, broken: bool, depth: int = 0) -> SearchStrategy[Any]:
    """Values for `shape`: all constraints honoured, or (`broken`) each leaf possibly broken."""
    return _shape_values(shape.name, harmless, broken, depth)


@functools.cache
def _shape_values(name: str, harmless: bool, broken: bool, depth: int) -> SearchStrategy[Any]:
    shape = SAGEMAKER.shape_for(name)
    special = _special(name, harmless)
    if name in _COMPLETE:  # these make their own odd values too
        valid = special
    elif special is not None:
        valid = st.one_of(special, _plain(shape, harmless, False, depth))
    else:
        valid = _plain(shape, harmless, False, depth)
    if not broken:
        return valid
    if depth == 0:  # the input itself stays an object here; whole-document breakage is _document_mutation's
        return _plain(shape, harmless, True, depth)
    if shape.type_name in ("structure", "list", "map"):
        structured = _plain(shape, harmless, True, depth)
        return st.one_of(structured, structured, structured, _broken_container(shape, harmless, depth))
    return st.one_of(valid, valid, valid, _broken_scalar(shape))


_TOKENS = next_tokens()
_ARNS = {True: resource_arns(True), False: resource_arns(False)}
# Shapes whose special strategy makes its own odd values: text from their pattern would add nothing.
_COMPLETE = frozenset({"ResourceArn", "NextToken", "PaginationToken"})


def _special(name: str, harmless: bool) -> SearchStrategy[Any] | None:
    if name in ("ModelName", "EndpointConfigName", "EndpointName"):
        return resource_names(harmless)
    if name == "ResourceArn":
        return _ARNS[harmless]
    if name in ("NextToken", "PaginationToken"):
        return _TOKENS
    if name in ("Url", "S3ModelUri"):
        return model_data_locations()
    if name == "TagKey":
        return st.sampled_from(("aws:fz", "AWS:fz", "aws:", "fz", "fz key"))
    return None


def _plain(shape: Any, harmless: bool, broken: bool, depth: int) -> SearchStrategy[Any]:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if meta.get("document"):
            return json_values
        if depth >= _HARD_DEPTH:
            return st.just({})
        members = shape.members
        required = {
            m: shape_values(members[m], harmless=harmless, broken=broken, depth=depth + 1)
            for m in shape.required_members
        }
        optional = {}
        if depth < _SOFT_DEPTH:
            optional = {
                m: shape_values(s, harmless=harmless, broken=broken, depth=depth + 1)
                for m, s in members.items()
                if m not in required
            }
        return st.fixed_dictionaries(required, optional=optional)
    if kind == "list":
        lo, hi = int(meta.get("min", 0)), int(meta.get("max", 3))
        member = shape_values(shape.member, harmless=harmless, broken=broken, depth=depth + 1)
        return st.lists(member, min_size=lo, max_size=max(lo, min(hi, 3)))
    if kind == "map":
        lo, hi = int(meta.get("min", 0)), int(meta.get("max", 3))
        keys = valid_text(shape.key.metadata)
        if broken:
            keys = st.one_of(keys, keys, broken_text(shape.key.metadata))
        values = shape_values(shape.value, harmless=harmless, broken=broken, depth=depth + 1)
        return st.dictionaries(keys, values, min_size=lo, max_size=max(lo, min(hi, 3)))
    if kind == "string":
        return valid_text(meta)
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        return st.integers(max(low, meta.get("min", low)), min(high, meta.get("max", high)))
    if kind in ("float", "double"):
        return st.floats(meta.get("min"), meta.get("max"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.one_of(
            st.integers(0, 4_102_444_800),
            st.floats(0, 4.1e9),
            st.datetimes().map(lambda moment: moment.isoformat()),
        )
    if kind == "blob":
        return st.binary(max_size=32).map(lambda raw: base64.b64encode(raw).decode())
    return json_scalars


def _broken_scalar(shape: Any) -> SearchStrategy[Any]:
    kind = shape.type_name
    meta = shape.metadata
    options: list[SearchStrategy[Any]] = [_wrong_types(kind)]
    if kind == "string":
        options.append(broken_text(meta))
    elif kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        lo, hi = max(low, meta.get("min", low)), min(high, meta.get("max", high))
        options.append(
            st.sampled_from((lo - 1, hi + 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30, 1.5))
        )
    elif kind in ("float", "double"):
        bounds = [meta["min"] - 1] if "min" in meta else []
        bounds += [meta["max"] + 1] if "max" in meta else []
        options.append(st.sampled_from((*bounds, 1e308, -1e308, 5e-324, "1.0")))
    elif kind == "timestamp":
        odd = (1e20, -1e20, -62135596801, 253402300800, "", "yesterday", "2024-13-45T00:00:00", "nan", "inf")
        options.append(st.sampled_from((*odd, "-inf", "1e400", "9" * 400, "2024-01-01T00:00:00+99:00")))
    elif kind == "blob":
        options.append(st.sampled_from(("not base64!", "=", "QQ", "QQ=", "\ud800", "YQ==YQ==")))
    elif kind == "boolean":
        options.append(st.sampled_from(("true", "false", 1, 0)))
    return st.one_of(options)


def _broken_container(shape: Any, harmless: bool, depth: int) -> SearchStrategy[Any]:
    kind = shape.type_name
    meta = shape.metadata
    options: list[SearchStrategy[Any]] = [_wrong_types(kind)]
    if kind == "list":
        hi = meta.get("max")
        member = shape_values(shape.member, harmless=harmless, broken=False, depth=depth + 1)
        if hi is not None and hi <= 100:
            options.append(member.map(lambda item: [item] * (hi + 1)))
        if meta.get("min", 0) > 0:
            options.append(st.just([]))
        options.append(st.lists(st.none(), min_size=1, max_size=2))
    elif kind == "map":
        hi = meta.get("max")
        if hi is not None and hi <= 100:
            options.append(st.just({f"K{i}": "v" for i in range(hi + 1)}))
        options.append(st.dictionaries(st.text(max_size=5), st.none(), min_size=1, max_size=2))
    elif kind == "structure" and shape.required_members:
        # every member given as null: null means absent, so each required one is missing
        options.append(st.just(dict.fromkeys(shape.members)))
    return st.one_of(options)


# ---------------------------------------------------------------------------------------------------
# Control-plane requests: awsJson1_1 documents, broken at the document and the byte level

_Path = tuple[str | int, ...]


def _paths(value: Any, prefix: _Path = ()) -> list[_Path]:
    out: list[_Path] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.append((*prefix, key))
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out.append((*prefix, index))
            out += _paths(item, (*prefix, index))
    return out


def _edit(value: Any, path: _Path, change: Callable[[Any, str | int], None]) -> Any:
    """A copy of `value` with `change(container, key)` applied at `path` (copied along the path only)."""
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    if len(path) == 1:
        change(copy, path[0])
    else:
        copy[path[0]] = _edit(copy[path[0]], path[1:], change)  # type: ignore[index]
    return copy


def _set(path: _Path, new: Any) -> Callable[[Any], Any]:
    def apply(document: Any) -> Any:
        def change(container: Any, key: str | int) -> None:
            container[key] = new

        return _edit(document, path, change)

    return apply


def _drop(document: Any, path: _Path) -> Any:
    def change(container: Any, key: str | int) -> None:
        del container[key]

    return _edit(document, path, change)


unknown_member_names = st.one_of(
    st.sampled_from(
        ("__type", "Unknown", "modelName", "MODELNAME", "", "__proto__", "NextToken ", "Tags\x00")
    ),
    odd_text,
)
huge_values = st.one_of(
    st.integers(16, 48).map(lambda k: "x" * (k * 1024)),
    st.integers(1, 8).map(lambda k: list(range(k * 500))),
    st.integers(1, 3).map(lambda k: {f"k{i}": i for i in range(k * 500)}),
    st.integers(1, 8).map(lambda k: [{}] * (k * 1000)),
)
junk_values = st.one_of(_wrong_types("any"), NESTING, huge_values, odd_text, lone_surrogates)


@st.composite
def _document_mutation(draw: st.DrawFn, operation: str, params: dict[str, Any]) -> tuple[Any, str]:
    """Break a well-typed input document on purpose; returns the document and what was done."""
    shape = SAGEMAKER.operation_model(operation).input_shape
    required = list(shape.required_members) if shape is not None else []
    paths = _paths(params)
    kinds = ["unknown", "non-object", "nesting", "huge", "duplicate-key", "case"]
    if paths:
        kinds += ["drop", "null", "replace", "replace"]
    if required:
        kinds.append("drop-required")
    kind = draw(st.sampled_from(kinds))
    if kind == "drop-required":
        name = draw(st.sampled_from(required))
        return {k: v for k, v in params.items() if k != name}, f"without {name}"
    if kind == "drop":
        path = draw(st.sampled_from(paths))
        return _drop(params, path), f"without {path}"
    if kind == "null":
        path = draw(st.sampled_from(paths))
        return _set(path, None)(params), f"null at {path}"
    if kind == "replace":
        path = draw(st.sampled_from(paths))
        return _set(path, draw(junk_values))(params), f"junk at {path}"
    if kind == "unknown":
        extra = draw(st.dictionaries(unknown_member_names, json_values, min_size=1, max_size=3))
        targets = [p for p in paths if _is_dict_at(params, p)]
        if targets and draw(st.booleans()):
            path = draw(st.sampled_from(targets))
            return _set(path, {**_at(params, path), **extra})(params), f"unknown members at {path}"
        return {**params, **extra}, "unknown members"
    if kind == "non-object":
        return draw(
            st.one_of(st.just([params]), json_scalars, NON_FINITE, BEYOND_DOUBLE, NESTING)
        ), "not an object"
    if kind == "nesting":
        if paths and draw(st.booleans()):
            path = draw(st.sampled_from(paths))
            return _set(path, draw(NESTING))(params), f"nesting at {path}"
        return draw(NESTING), "nesting"
    if kind == "huge":
        key = draw(st.one_of(st.sampled_from(sorted(params) or ["Huge"]), unknown_member_names))
        return {**params, key: draw(huge_values)}, f"huge {key!r}"
    if kind == "duplicate-key":
        key = draw(st.sampled_from(sorted(params) or ["ModelName"]))
        second = draw(st.one_of(st.just(params.get(key)), junk_values, st.sampled_from(SCRATCH)))
        first_wins = draw(st.booleans())
        items = tuple(params.items())
        pair = ((key, second),)
        return Pairs(pair + items if first_wins else items + pair), f"repeated key {key!r}"
    # "case": member names in another case are unknown members, so the real ones go missing
    change = draw(st.sampled_from((str.lower, str.upper, lambda s: s[:1].lower() + s[1:])))
    return {change(k): v for k, v in params.items()}, "member names in another case"


def _at(document: Any, path: _Path) -> Any:
    for key in path:
        document = document[key]
    return document


def _is_dict_at(document: Any, path: _Path) -> bool:
    return isinstance(_at(document, path), dict)


INVALID_UTF8 = (
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xc0\xaf",
    b"\xf4\x90\x80\x80",
)


@st.composite
def _byte_mutation(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    kind = draw(
        st.sampled_from(
            ("utf8", "utf8-in-string", "truncate", "flip", "bom", "utf16", "trailing", "empty", "random")
        )
    )
    if kind in ("utf8", "utf8-in-string"):
        quotes = [i + 1 for i, byte in enumerate(body) if byte == ord('"')]
        spots = quotes if kind == "utf8-in-string" and quotes else list(range(len(body) + 1))
        at = draw(st.sampled_from(spots))
        return body[:at] + draw(st.sampled_from(INVALID_UTF8)) + body[at:], f"invalid UTF-8 at {at}"
    if kind == "truncate":
        at = draw(st.integers(0, max(0, len(body) - 1)))
        return body[:at], f"cut at {at}"
    if kind == "flip" and body:
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :], f"byte {at} changed"
    if kind == "bom":
        return b"\xef\xbb\xbf" + body, "UTF-8 BOM"
    if kind == "utf16":
        return body.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass"), "UTF-16"
    if kind == "trailing":
        return body + draw(st.sampled_from((b"x", b"{}", b"\x00", b",", b" \n", b"]"))), "trailing bytes"
    if kind == "empty":
        return draw(st.sampled_from((b"", b" ", b"\r\n\t"))), "empty"
    return draw(st.binary(max_size=200)), "random bytes"


@st.composite
def control_bodies(draw: st.DrawFn, operation: str) -> tuple[bytes, str]:
    """A body for `operation` and a note saying how it was made."""
    mode = draw(st.sampled_from(("valid", "leaves", "leaves", "document", "document", "bytes")))
    harmless = operation in HARMLESS
    shape = SAGEMAKER.operation_model(operation).input_shape
    params = draw(shape_values(shape, harmless=harmless, broken=mode != "valid")) if shape is not None else {}
    document: Any = params
    note = mode
    if mode in ("document", "bytes") and isinstance(params, dict):
        document, what = draw(_document_mutation(operation, params))
        note += f": {what}"
    if operation == "CreateModel":
        document = undeployable(document)
    # mostly \u escapes, the way SDKs write JSON: only then do lone surrogates get past the UTF-8 decoder
    body = encode_json(document, ascii_only=draw(st.integers(0, 3)) < 3)
    if mode == "bytes":
        body, what = draw(_byte_mutation(body))
        note += f"; {what}"
    assume(len(body) <= MAX_BODY)
    return body, note


# ---------------------------------------------------------------------------------------------------
# HTTP requests


@dataclass(frozen=True)
class HttpRequest:
    """One request as bytes go on the wire (Host and Content-Length are added unless given)."""

    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    operation: str | None = None  # the control operation the X-Amz-Target header names exactly
    note: str = ""

    def wire(self) -> bytes:
        names = {name.lower() for name, _ in self.headers}
        lines = [b"%s %s HTTP/1.1" % (self.method, self.target)]
        if b"host" not in names:
            lines.append(b"Host: 127.0.0.1")
        lines += [b"%s: %s" % header for header in self.headers]
        if b"content-length" not in names and b"transfer-encoding" not in names:
            lines.append(b"Content-Length: %d" % len(self.body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body

    def __repr__(self) -> str:
        return f"HttpRequest({self.note!r}, wire={short(self.wire(), 600)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints falsifying examples with this


def short(data: bytes, limit: int = 1500) -> str:
    """A readable prefix of `data` for failure messages."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data)} bytes in all)"


# Headers a request may carry only once: a second, different value must not be silently dropped.
SINGLE_HEADERS = frozenset(
    {
        b"host",
        b"content-type",
        b"x-amz-target",
        b"x-amzn-sagemaker-target-variant",
        b"x-amzn-sagemaker-inference-id",
    }
)


def conflicting_repeats(headers: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
    """Single-valued headers that the request repeats with different values (it must be refused)."""
    seen: dict[bytes, set[bytes]] = {}
    for name, value in headers:
        seen.setdefault(name.lower(), set()).add(value)
    return sorted(name for name, values in seen.items() if name in SINGLE_HEADERS and len(values) > 1)


def _latin1(text: str) -> bytes:
    """Header bytes for `text`, without the CR, LF and NUL that would change the framing itself."""
    clean = text.replace("\r", "").replace("\n", "").replace("\x00", "")
    return (
        clean.encode("utf-8", "surrogatepass")
        if any(ord(c) > 255 for c in clean)
        else clean.encode("latin-1")
    )


_TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
header_names = st.text(alphabet=_TOKEN, min_size=1, max_size=24).map(str.encode)
header_values = st.one_of(
    st.text(max_size=40), odd_text, st.binary(max_size=20).map(lambda b: b.decode("latin-1"))
).map(_latin1)
random_headers = st.lists(st.tuples(header_names, header_values), max_size=4)
random_case = st.sampled_from((bytes, bytes.lower, bytes.upper))


@st.composite
def _targets(draw: st.DrawFn, operation: str) -> tuple[bytes | None, bool]:
    """An X-Amz-Target value (None: no header) and whether it names `operation` exactly."""
    exact = f"SageMaker.{operation}".encode()
    if draw(st.integers(0, 5)) < 5:  # shrinks towards the exact header
        return exact, True
    variant = draw(
        st.sampled_from(
            (
                None,
                b"",
                b"SageMaker.",
                b"SageMaker." + operation.lower().encode(),
                b"sagemaker." + operation.encode(),
                b"SageMaker_" + operation.encode(),
                operation.encode(),
                exact + b" ",
                b"SageMaker.." + operation.encode(),
                b"SageMaker." + operation.encode() + b"\xff",
                b"AmazonSageMakerRuntime." + operation.encode(),
                b"SageMaker.__init__",
                b"SageMaker.operation_model",
                b"SageMaker." + b"A" * 2000,
            )
        )
    )
    return variant, False


def _sigv4(region: str) -> bytes:
    return (
        f"AWS4-HMAC-SHA256 Credential=AKIDFUZZ/20240101/{region}/sagemaker/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64
    ).encode("utf-8", "surrogatepass")


authorizations = st.one_of(
    st.from_regex(r"[a-z0-9\-]{1,40}", fullmatch=True).map(_sigv4),
    odd_text.map(_sigv4).map(
        lambda value: value.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
    ),
    header_values,
)
control_content_types = st.sampled_from(
    (b"application/x-amz-json-1.1",) * 6
    + (
        b"application/json",
        b"application/x-amz-json-1.0",
        b"text/plain",
        b"",
        b"application/x-amz-json-1.1; charset=latin-1",
    )
)


@st.composite
def control_requests(draw: st.DrawFn, operations: Sequence[str] = IMPLEMENTED) -> HttpRequest:
    """POST / for one of `operations`, with a fuzzed body and (sometimes) odd headers.

    The body is drawn last: hypothesis varies the latest choices most, and the body is where variety pays."""
    operation = draw(st.sampled_from(operations))
    target, exact = draw(_targets(operation))
    headers: list[tuple[bytes, bytes]] = []
    notes = []
    if target is not None:
        headers.append((draw(random_case)(b"X-Amz-Target"), target))
    if draw(st.integers(0, 7)) < 7:
        headers.append((b"Content-Type", draw(control_content_types)))
    if draw(st.booleans()):
        headers.append((b"Authorization", draw(authorizations)))
    if draw(st.integers(0, 9)) == 9:
        other = draw(st.sampled_from(IMPLEMENTED + OTHER_OPERATIONS[:5]))
        name = draw(st.sampled_from((b"X-Amz-Target", b"Content-Type", b"Host")))
        value = f"SageMaker.{other}".encode() if name == b"X-Amz-Target" else b"text/plain"
        headers.insert(draw(st.integers(0, len(headers))), (name, value))
        notes.append(f"second {name.decode()}")
    headers += draw(random_headers)
    path = draw(st.sampled_from((b"/",) * 8 + (b"/?", b"/?Action=DeleteEndpoint", b"/?x=%ff")))
    body, note = draw(control_bodies(operation))
    named = operation if exact and target is not None else None
    return HttpRequest(
        b"POST", path, tuple(headers), body, named, f"{operation} ({'; '.join([note, *notes])})"
    )


# ---------------------------------------------------------------------------------------------------
# Runtime requests: POST /endpoints/{name}/invocations


def _percent(raw: bytes) -> bytes:
    return "".join(f"%{byte:02X}" for byte in raw).encode()


endpoint_names = st.one_of(
    st.just(ECHO.encode()),
    st.just(ECHO.encode()),
    st.just(_percent(ECHO.encode())),
    st.builds(lambda i: ECHO[:i].encode() + _percent(ECHO[i:].encode()), st.integers(0, len(ECHO))),
    st.from_regex(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", fullmatch=True).map(str.encode),
    odd_text.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="").encode()),
    st.binary(min_size=1, max_size=16).filter(lambda b: not any(c in b for c in b" \r\n?#/")),
    st.sampled_from(
        (
            b"",
            b"%",
            b"%zz",
            b"%00",
            b"%2F",
            b"..",
            b".",
            b"a" * 64,
            b"a" * 300,
            b"%ED%A0%80",
            b"%C0%AF",
            b"%FF",
            b"a%20b",
        )
    ),
)
_ACTIONS = (b"/invocations",) * 8 + (
    b"/async-invocations",
    b"/invocations-response-stream",
    b"",
    b"/",
    b"/invocations/",
    b"/Invocations",
    b"/invocations/x",
    b"//invocations",
)
_INVOKE_SHAPE = RUNTIME.operation_model("InvokeEndpoint").input_shape
RUNTIME_HEADERS = {
    member: shape.serialization["name"].encode()
    for member, shape in _INVOKE_SHAPE.members.items()
    if shape.serialization.get("location") == "header"
}


def _runtime_header_value(member: str) -> SearchStrategy[bytes]:
    meta = _INVOKE_SHAPE.members[member].metadata
    if member in ("ContentType", "Accept"):
        usual = st.sampled_from(("application/json", "application/json", "text/csv", "*/*", ""))
        valid = st.one_of(usual, valid_text(meta))
    elif member == "TargetVariant":
        valid = st.one_of(st.just("AllTraffic"), valid_text(meta))
    else:
        valid = valid_text(meta)
    over = st.builds(lambda n: "a" * (int(meta.get("max", 1024)) + n), st.integers(1, 8))
    return st.one_of(
        valid, valid, over, odd_text, st.binary(max_size=12).map(lambda b: b.decode("latin-1"))
    ).map(_latin1)


@st.composite
def runtime_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    for member, name in RUNTIME_HEADERS.items():
        # Content-Type and Accept most of the time, each of the others now and then
        present = (
            draw(st.integers(0, 3)) > 0
            if member in ("ContentType", "Accept")
            else draw(st.integers(0, 9)) == 9
        )
        if present:
            headers.append((draw(random_case)(name), draw(_runtime_header_value(member))))
    if draw(st.integers(0, 9)) == 9:
        name = draw(st.sampled_from(sorted(RUNTIME_HEADERS.values())))
        headers.append((name, draw(_runtime_header_value("ContentType"))))
    return headers + draw(random_headers)


def harmless_payload(body: bytes) -> bool:
    """The echo model sleeps or exits on some keys; a fuzzed body must not ask it to."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return True
    return not (isinstance(data, dict) and RESERVED_KEYS & set(data))


runtime_bodies = st.one_of(
    st.dictionaries(st.text(max_size=10), json_values, max_size=5).map(encode_json),
    st.builds(lambda text: encode_json({"crash": text}), odd_text),
    st.lists(json_values, max_size=4).map(encode_json),
    st.binary(max_size=2000),
    st.just(b""),
    NESTING.map(lambda value: value.data),
    st.builds(lambda text: encode_json({"a": text}, ascii_only=False), st.one_of(odd_text, lone_surrogates)),
    st.sampled_from(
        (b'{"a": NaN}', b'{"a": 1e400}', b'{"a": ' + b"9" * 5000 + b"}", b"\xff\xfe{}", b"{" * 3)
    ),
    st.integers(8, 48).map(lambda k: b'{"blob": "' + b"x" * (k * 1024) + b'"}'),
).filter(harmless_payload)


@st.composite
def runtime_requests(draw: st.DrawFn) -> HttpRequest:
    method = draw(
        st.sampled_from((b"POST",) * 10 + (b"GET", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"))
    )
    action = draw(st.sampled_from(_ACTIONS))
    query = draw(st.sampled_from((b"",) * 6 + (b"?", b"?a=b", b"?X-Amz-Date=1", b"?%ff")))
    headers = draw(runtime_headers())
    name = draw(endpoint_names)  # name and body last: hypothesis varies the latest choices most
    body = draw(runtime_bodies)
    target = b"/endpoints/" + name + action + query
    return HttpRequest(method, target, tuple(headers), body, None, "runtime")


# ---------------------------------------------------------------------------------------------------
# Other methods and paths

_PATHS = (
    b"/",
    b"/ping",
    b"/ping?x=1",
    b"/endpoints",
    b"/endpoints/",
    b"/endpoints/x",
    b"/endpoints/x/invocations",
    b"/endpoints/" + ECHO.encode() + b"/invocations",
    b"/endpoints//invocations",
    b"//",
    b"/invocations",
    b"/execution-parameters",
    b"*",
    b"/%00",
    b"/..%2f..",
    b"/?Action=ListModels",
    b"http://127.0.0.1/ping",
    b"/metrics",
)
methods = st.one_of(
    st.sampled_from(
        (b"GET", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"POST", b"TRACE", b"CONNECT")
    ),
    st.from_regex(r"[A-Z][A-Z\-]{0,11}", fullmatch=True).map(str.encode),
)
paths = st.one_of(
    st.sampled_from(_PATHS),
    st.text(alphabet="abcdefxyz0123456789-._~!$&'()*+,;=:@/%?", max_size=40).map(lambda t: b"/" + t.encode()),
    odd_text.map(lambda t: b"/" + quote(t.encode("utf-8", "surrogatepass"), safe="/").encode()),
)


@st.composite
def other_requests(draw: st.DrawFn) -> HttpRequest:
    method = draw(methods)
    body = draw(st.one_of(st.just(b""), st.binary(max_size=64), runtime_bodies))
    return HttpRequest(method, draw(paths), tuple(draw(random_headers)), body, None, "method/path")


# ---------------------------------------------------------------------------------------------------
# Raw HTTP framing: what must come back for bytes no well-behaved client sends


@dataclass(frozen=True)
class Expect:
    """One answer the server owes: to what request, and what it must (not) contain."""

    method: bytes
    target: bytes
    operation: str | None = None
    marker: bytes | None = None  # must appear in the body (shows pipelined answers come in order)
    refuse: bool = False  # must not be 2xx
    interim: bool = False  # a 100 Continue is owed first (or a final answer instead, then no body is sent)


@dataclass(frozen=True)
class Step:
    """Bytes to write, then the answers to read before the next step."""

    data: bytes
    answers: tuple[Expect, ...] = ()


@dataclass(frozen=True)
class Exchange:
    """A conversation on one connection. `tail`: "none" if nothing more is owed; "may" if the server
    may answer or keep waiting for bytes that never come (a truncated request); "must" if one more
    answer is owed, a refusal of the malformed bytes at the end."""

    label: str
    steps: tuple[Step, ...]
    tail: Literal["none", "may", "must"] = "none"

    def __repr__(self) -> str:
        sent = b"".join(step.data for step in self.steps)
        return f"Exchange({self.label!r}, tail={self.tail}, sent={short(sent, 600)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


PING = Expect(b"GET", b"/ping", marker=b"Healthy")
_LIST_MODELS = (
    b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.ListModels\r\n"
    b"Content-Type: application/x-amz-json-1.1\r\n"
)
_ECHO_PATH = b"/endpoints/" + ECHO.encode() + b"/invocations"


def _request(method: bytes, target: bytes, headers: bytes = b"", body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body or method == b"POST" else b""
    return b"%s %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n%s" % (method, target, headers, length, body)


def _pipeline_item(kind: str, k: int) -> tuple[bytes, Expect]:
    """A well-formed request whose answer shows which request it answers."""
    tag = b"fz-pipe-%d" % k
    if kind == "ping":
        return _request(b"GET", b"/ping"), PING
    if kind == "head":
        return _request(b"HEAD", b"/ping"), Expect(b"HEAD", b"/ping")
    if kind == "describe":
        body = b'{"ModelName": "%s"}' % tag
        headers = b"X-Amz-Target: SageMaker.DescribeModel\r\nContent-Type: application/x-amz-json-1.1\r\n"
        return _request(b"POST", b"/", headers, body), Expect(b"POST", b"/", "DescribeModel", marker=tag)
    if kind == "echo":
        body = b'{"marker": "%s"}' % tag
        return (
            _request(b"POST", _ECHO_PATH, b"Content-Type: application/json\r\n", body),
            Expect(b"POST", _ECHO_PATH, marker=tag),
        )
    if kind == "missing":
        target = b"/endpoints/%s/invocations" % tag
        return _request(b"POST", target, b"", b"{}"), Expect(b"POST", target, marker=tag)
    return _request(b"GET", b"/nope"), Expect(b"GET", b"/nope")


_PIPELINE_KINDS = ("ping", "head", "describe", "echo", "missing", "not-found")


def _split(data: bytes, cuts: list[int]) -> tuple[bytes, ...]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return tuple(data[a:b] for a, b in itertools.pairwise(points) if b > a)


@st.composite
def pipelines(draw: st.DrawFn) -> Exchange:
    kinds = draw(st.lists(st.sampled_from(_PIPELINE_KINDS), min_size=2, max_size=6))
    items = [_pipeline_item(kind, k) for k, kind in enumerate(kinds)]
    data = b"".join(request for request, _ in items)
    junk = draw(
        st.sampled_from((b"", b"", b"", b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHo", b"\x16\x03\x01"))
    )
    data += junk
    pieces = _split(data, draw(st.lists(st.integers(0, len(data)), max_size=4)))
    steps = (*(Step(piece) for piece in pieces[:-1]), Step(pieces[-1], tuple(e for _, e in items)))
    tail: Literal["none", "may", "must"] = "may" if junk else "none"
    return Exchange(f"pipeline {'+'.join(kinds)}{' + junk' if junk else ''}", steps, tail)


@st.composite
def head_then_get(draw: st.DrawFn) -> Exchange:
    """A HEAD answer has no body: the GET after it on the same connection must read a clean answer."""
    target = draw(st.one_of(st.sampled_from(_PATHS[:12]), paths))
    head = _request(b"HEAD", target, draw(st.sampled_from((b"", b"X-Amz-Target: SageMaker.ListModels\r\n"))))
    first = Expect(b"HEAD", target)
    if draw(st.booleans()):
        steps = (Step(head + _request(b"GET", b"/ping"), (first, PING)),)
    else:
        steps = (Step(head, (first,)), Step(_request(b"GET", b"/ping"), (PING,)))
    return Exchange(f"HEAD {target!r} then GET", steps)


_MUST_ANSWER_HEADS = (
    b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"get /ping HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ping HTTP/1.1\nHost: x\n\n",
    b"GET /ping HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nHost : x\r\n\r\n",
    b"GET /ping HTTP/1.1\r\n: x\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX(Y): v\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX: a\rb\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX: \x7f\x01\r\n\r\n",
    b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /ping HTTP/1.10\r\nHost: x\r\n\r\n",
    b"GET /ping HTTP/0.9\r\n\r\n",
    b"GET /ping FOO/1.1\r\n\r\n",
    b"GET /ping\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32 + b"\r\n\r\n",
    b"A" * 5000 + b" / HTTP/1.1\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    b"\r\n",
    b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
    b"\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n",
    b"POST " + _ECHO_PATH + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(6000)) + b"\r\n",
)
_CONTENT_LENGTHS = (
    b"+2",
    b"-1",
    b" 2",
    b"2 ",
    b"0x2",
    b"2,2",
    b"2, 3",
    b"",
    b"1e1",
    b"\xd9\xa2",
    b"00000000002",
    b"\t2",
)
_CHUNKED_BODIES: tuple[tuple[bytes, Literal["none", "may", "must"]], ...] = (
    (b"2\r\n{}\r\n0\r\n\r\n", "none"),
    (b"2;a=b\r\n{}\r\n0\r\n\r\n", "none"),
    (b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n", "none"),
    (b"1\r\n{\r\n1\r\n}\r\n0\r\n\r\n", "none"),
    (b"02\r\n{}\r\n0\r\n\r\n", "none"),
    (b"zz\r\n{}\r\n0\r\n\r\n", "must"),
    (b"fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n", "must"),
    (b"-2\r\n{}\r\n0\r\n\r\n", "must"),
    (b"2\r\n{}x\r\n0\r\n\r\n", "must"),
    (b"2\r\n{}0\r\n\r\n", "must"),
    (b"2\n{}\n0\n\n", "must"),
    (b"2 \r\n{}\r\n0\r\n\r\n", "must"),
    (b"0x2\r\n{}\r\n0\r\n\r\n", "must"),
    (b"2\r\n{}\r\n0\r\nBad Trailer\r\n\r\n", "must"),
    (b"5\r\n{}", "may"),
    (b"2\r\n{}\r\n", "may"),
    (b"100000\r\n{}", "may"),
    (b"2\r\n{}\r\n0\r\n", "may"),
)
# Bigger than the 64 KiB head limit, never finished: the server must refuse, not wait for the rest.
_UNFINISHED_HEADS = (
    b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000,
    b"GET /" + b"a" * 70000,
    b"GET /ping HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(12000)),
)


@st.composite
def framing_exchanges(draw: st.DrawFn) -> Exchange:
    """Malformed heads, odd lengths and encodings, truncation, duplicates, Expect, HEAD and pipelines."""
    kind = draw(
        st.sampled_from(
            (
                "malformed",
                "mutated",
                "length",
                "chunked",
                "truncated",
                "unfinished",
                "duplicate",
                "expect",
                "pipeline",
                "head",
            )
        )
    )
    if kind == "malformed":
        data = draw(st.sampled_from(_MUST_ANSWER_HEADS))
        return Exchange("malformed head", (Step(data),), "must")
    if kind == "mutated":
        base, _ = _pipeline_item(draw(st.sampled_from(_PIPELINE_KINDS)), 0)
        at = draw(st.integers(0, len(base)))
        junk = draw(
            st.one_of(
                st.binary(min_size=1, max_size=3), st.sampled_from((b"\r\n", b"\n", b" ", b":", b"\x00"))
            )
        )
        return Exchange(f"byte(s) inserted at {at}", (Step(base[:at] + junk + base[at:]),), "may")
    if kind == "length":
        value = draw(st.sampled_from(_CONTENT_LENGTHS))
        data = _LIST_MODELS + b"Content-Length: " + value + b"\r\n\r\n{}"
        return Exchange(f"Content-Length {value!r}", (Step(data),), "must")
    if kind == "chunked":
        body, tail = draw(st.sampled_from(_CHUNKED_BODIES))
        data = _LIST_MODELS + b"Transfer-Encoding: chunked\r\n\r\n" + body
        if tail == "none":
            return Exchange("chunked body", (Step(data, (Expect(b"POST", b"/", "ListModels"),)),))
        return Exchange("chunked body", (Step(data),), tail)
    if kind == "truncated":
        full = draw(st.sampled_from([_pipeline_item(k, 0)[0] for k in ("describe", "echo", "missing")]))
        cut = draw(st.integers(1, len(full) - 1))
        return Exchange(f"cut at {cut} of {len(full)}", (Step(full[:cut]),), "may")
    if kind == "unfinished":
        return Exchange(
            "unfinished head over the limit", (Step(draw(st.sampled_from(_UNFINISHED_HEADS))),), "must"
        )
    if kind == "duplicate":
        return draw(_duplicates())
    if kind == "expect":
        return draw(_expect_continue())
    if kind == "pipeline":
        return draw(pipelines())
    return draw(head_then_get())


@st.composite
def _duplicates(draw: st.DrawFn) -> Exchange:
    """A header sent twice: a second, different value of a single-valued header must be refused."""
    case = draw(st.sampled_from(("target", "content-type", "host", "variant", "same", "accept")))
    if case == "target":
        ops = draw(st.lists(st.sampled_from(IMPLEMENTED), min_size=2, max_size=2, unique=True))
        headers = b"".join(b"X-Amz-Target: SageMaker.%s\r\n" % op.encode() for op in ops)
        data = _request(b"POST", b"/", headers + b"Content-Type: application/x-amz-json-1.1\r\n", b"{}")
        return Exchange(f"two X-Amz-Target {ops}", (Step(data, (Expect(b"POST", b"/", refuse=True),)),))
    if case == "content-type":
        first = draw(st.sampled_from((b"text/csv", b"application/x-npy", b"")))
        headers = b"Content-Type: %s\r\nContent-Type: application/json\r\n" % first
        data = _request(b"POST", _ECHO_PATH, headers, b'{"a": 1}')
        return Exchange("two Content-Type", (Step(data, (Expect(b"POST", _ECHO_PATH, refuse=True),)),))
    if case == "host":
        data = b"GET /ping HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"
        return Exchange("two Host", (Step(data, (Expect(b"GET", b"/ping", refuse=True),)),))
    if case == "variant":
        headers = b"Content-Type: application/json\r\nX-Amzn-SageMaker-Target-Variant: nope\r\n"
        headers += b"X-Amzn-SageMaker-Target-Variant: AllTraffic\r\n"
        data = _request(b"POST", _ECHO_PATH, headers, b'{"a": 1}')
        return Exchange("two Target-Variant", (Step(data, (Expect(b"POST", _ECHO_PATH, refuse=True),)),))
    if case == "same":
        headers = b"X-Amz-Target: SageMaker.ListModels\r\n" * 2
        data = _request(b"POST", b"/", headers, b"{}")
        return Exchange("the same X-Amz-Target twice", (Step(data, (Expect(b"POST", b"/"),)),))
    headers = b"Content-Type: application/json\r\nAccept: text/csv\r\nAccept: application/json\r\n"
    data = _request(b"POST", _ECHO_PATH, headers, b'{"a": 1}')
    return Exchange("two Accept (a list header)", (Step(data, (Expect(b"POST", _ECHO_PATH),)),))


@st.composite
def _expect_continue(draw: st.DrawFn) -> Exchange:
    spelling = draw(st.sampled_from((b"100-continue", b"100-Continue")))
    target, headers, body, operation = draw(
        st.sampled_from(
            (
                (b"/", b"X-Amz-Target: SageMaker.ListModels\r\n", b"{}", "ListModels"),
                (_ECHO_PATH, b"Content-Type: application/json\r\n", b'{"a": 1}', None),
            )
        )
    )
    head = b"POST %s HTTP/1.1\r\nHost: x\r\n%sExpect: %s\r\n" % (target, headers, spelling)
    if draw(st.booleans()):  # too large: refused before the body is sent
        data = head + b"Content-Length: 20000000\r\n\r\n"
        return Exchange(
            "Expect: 100-continue, too large",
            (Step(data, (Expect(b"POST", target, operation, interim=True),)),),
        )
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    final = Expect(b"POST", target, operation)
    if draw(st.booleans()):  # the body right away, as clients do once they stop waiting
        return Exchange("Expect: 100-continue, body at once", (Step(head + body, (final,)),))
    steps = (Step(head, (Expect(b"POST", target, operation, interim=True),)), Step(body, (final,)))
    return Exchange("Expect: 100-continue", steps)
