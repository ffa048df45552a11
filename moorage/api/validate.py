"""Input checks against botocore shapes, worded the way AWS words them.

botocore validates ``required``, types and ``min`` on the client but never ``max``, ``pattern`` or
``enum``, and other SDKs or raw HTTP clients validate nothing, so the server checks everything.
botocore's ``ParamValidator`` is not reused: its messages name Python paths (``ProductionVariants[0]``),
it accepts ``True`` as an integer and it has no hook for the constraints it skips. One walk here checks
all of them and, for JSON input, also normalises values (unknown members dropped, ``null`` treated as
absent, timestamps to aware UTC datetimes, blobs from base64 to bytes).

Messages follow AWS's (Coral) format, e.g. ``1 validation error detected: Value 'abc!' at
'endpointName' failed to satisfy constraint: Member must satisfy regular expression pattern:
^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``.
Paths use lowerCamelCase names and 1-based ``.N.member`` list steps. A list or map of scalars is reported
once, at the container: ``Member must satisfy constraint: [...]``, ``Map keys/value must satisfy ...``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Iterator, Mapping, Sequence, Sized
from datetime import UTC, datetime
from typing import Any, Protocol

import regex
from botocore.model import Shape

from moorage.api.errors import SerializationException, ValidationException

_CONTAINERS = frozenset({"structure", "list", "map"})
_EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "long": "an integer",
    "float": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "timestamp": "a timestamp (epoch seconds or ISO 8601)",
    "blob": "base64-encoded data",
    "bytes": "binary data",
    "structure": "an object",
    "map": "an object",
    "list": "a list",
}
_MAX_VALUE_CHARS = 100
_MAX_DEPTH = 20  # deeper values print as "..." in messages
_MAX_ENUM_CHARS = 200
_MAX_PROBLEMS = 10
_JAVA_SYNTAX = (
    ("[\\p{Print}]", "[\\x20-\\x7E]"),
    ("\\p{Print}", "[\\x20-\\x7E]"),
    ("\\p{ASCII}", "[\\x00-\\x7F]"),
    ("\\p{Alnum}", "a-zA-Z0-9"),
    ("\\z", "\\Z"),
    # Java spells the supplementary planes as a UTF-16 surrogate pair range
    ("\\uD800\\uDC00-\\uDBFF\\uDFFF", "\\U00010000-\\U0010FFFF"),
)


class _Pattern(Protocol):
    def fullmatch(self, string: str) -> object | None: ...


class _TypeMismatch(Exception):
    def __init__(self, path: str, value: Any, type_name: str) -> None:
        super().__init__(f"Value {_render(value)} at '{path}' is not {_EXPECTED.get(type_name, type_name)}.")


class _Walker:
    """One pass over a value and its shape. ``from_json``: convert wire types and raise on a type mismatch;
    otherwise values are already typed and a mismatch is one more problem."""

    def __init__(self, *, from_json: bool) -> None:
        self.from_json = from_json
        self.problems: list[str] = []

    def walk(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        if kind == "structure":
            return value if shape.metadata.get("document") else self._structure(shape, value, path)
        if kind == "list":
            return self._list(shape, value, path)
        if kind == "map":
            return self._map(shape, value, path)
        value = self._scalar(shape, value, path)
        self.problems.extend(_at(path, value, c) for c in _violations(shape, value))
        return value

    def _mismatch(self, path: str, value: Any, type_name: str) -> Any:
        if self.from_json:
            raise _TypeMismatch(path, value, type_name)
        self.problems.append(_at(path, value, f"Member must be {_EXPECTED.get(type_name, type_name)}"))
        return value

    def _structure(self, shape: Any, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self._mismatch(path, value, "structure")
        for name in shape.required_members:
            if value.get(name) is None:
                self.problems.append(_at(_join(path, name), None, "Member must not be null"))
        members = shape.members
        out: dict[str, Any] = {}
        for name, item in value.items():
            member = members.get(name)
            if member is not None and item is not None:  # unknown members are dropped, null means absent
                out[name] = self.walk(member, item, _join(path, name))
        return out

    def _list(self, shape: Any, value: Any, path: str) -> Any:
        if not isinstance(value, list | tuple):
            return self._mismatch(path, value, "list")
        if self._oversized(shape, value, path):
            return value
        member = shape.member
        if member.type_name in _CONTAINERS:
            out = []
            for i, item in enumerate(value, 1):
                if item is None:
                    self.problems.append(_at(f"{path}.{i}.member", None, "Member must not be null"))
                else:
                    out.append(self.walk(member, item, f"{path}.{i}.member"))
            return out
        out, failed = self._scalars(member, value, path)
        if failed:
            self.problems.append(_at(path, value, f"Member must satisfy constraint: [{', '.join(failed)}]"))
        return out

    def _map(self, shape: Any, value: Any, path: str) -> Any:
        if not isinstance(value, Mapping):
            return self._mismatch(path, value, "map")
        if self._oversized(shape, value, path):
            return value
        keys, key_failed = self._scalars(shape.key, list(value), path)
        if key_failed:
            self.problems.append(
                _at(path, value, f"Map keys must satisfy constraint: [{', '.join(key_failed)}]")
            )
        if shape.value.type_name in _CONTAINERS:
            items = [
                self.walk(shape.value, v, f"{path}.{k}.member") if v is not None else None
                for k, v in value.items()
            ]
            if None in items:
                self.problems.append(
                    _at(path, value, "Map value must satisfy constraint: [Member must not be null]")
                )
        else:
            items, failed = self._scalars(shape.value, list(value.values()), path)
            if failed:
                self.problems.append(
                    _at(path, value, f"Map value must satisfy constraint: [{', '.join(failed)}]")
                )
        return dict(zip(keys, items, strict=True))

    def _oversized(self, shape: Shape, value: Sized, path: str) -> bool:
        """Report a container's size violations; past its maximum its entries are not walked, so the work
        a request costs is bounded by the model's limits, not by what the client sent."""
        violations = _size_violations(shape.metadata, len(value))
        self.problems.extend(_at(path, value, c) for c in violations)
        return bool(len(value) > shape.metadata.get("max", len(value)))

    def _scalars(self, shape: Shape, values: Sequence[Any], path: str) -> tuple[list[Any], list[str]]:
        """Convert scalar entries of a container; the caller reports their deduplicated violations once."""
        out: list[Any] = []
        failed: dict[str, None] = {}
        for item in values:
            if item is None:
                failed["Member must not be null"] = None
                out.append(None)
                continue
            item = self._scalar(shape, item, path)
            out.append(item)
            failed.update(dict.fromkeys(_violations(shape, item)))
        return out, list(failed)

    def _scalar(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        if kind == "string":
            ok = isinstance(value, str)
        elif kind in ("integer", "long"):
            if self.from_json and isinstance(value, float) and value.is_integer():
                return int(value)
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind in ("float", "double"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and self.from_json:
                try:
                    return float(value)
                except OverflowError:  # an integer literal beyond any double
                    ok = False
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind == "timestamp":
            return self._timestamp(value, path)
        elif kind == "blob":
            return self._blob(value, path)
        else:
            return value
        return value if ok else self._mismatch(path, value, kind)

    def _timestamp(self, value: Any, path: str) -> Any:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if self.from_json and not isinstance(value, bool):
            try:
                if isinstance(value, int | float):
                    return datetime.fromtimestamp(value, UTC)
                if isinstance(value, str):
                    return _parse_timestamp_text(value)
            except (ValueError, OverflowError, OSError):
                pass
        return self._mismatch(path, value, "timestamp")

    def _blob(self, value: Any, path: str) -> Any:
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if self.from_json and isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except binascii.Error:
                pass
        return self._mismatch(path, value, "blob" if self.from_json else "bytes")


def validate_input(shape: Shape, params: Any) -> dict[str, Any]:
    """Check decoded JSON against an input structure; return it normalised (see the module docstring).

    A wrong JSON type raises ``SerializationException`` (the request could not be read); constraint violations
    raise one ``ValidationException`` listing them all."""
    walker = _Walker(from_json=True)
    try:
        out: dict[str, Any] = walker.walk(shape, params, "")
    except _TypeMismatch as exc:
        raise SerializationException(str(exc)) from None
    if walker.problems:
        raise ValidationException(validation_message(walker.problems))
    return out


def validate_members(shape: Shape, params: Mapping[str, Any]) -> list[str]:
    """Coral-worded violations of already-typed ``params`` (e.g. restJson headers) against a structure.

    Nothing is converted; wrap a non-empty result with ``validation_message`` in the service's error class."""
    walker = _Walker(from_json=False)
    walker.walk(shape, params, "")
    return walker.problems


def validation_message(problems: Sequence[str]) -> str:
    """``1 validation error detected: …`` / ``N validation errors detected: …; …`` (at most 10 listed)."""
    n = len(problems)
    shown = "; ".join(problems[:_MAX_PROBLEMS]) + ("; ..." if n > _MAX_PROBLEMS else "")
    return f"{n} validation error{'s' if n != 1 else ''} detected: {shown}"


def _violations(shape: Shape, value: Any) -> list[str]:
    """The constraint texts a scalar value breaks (length for strings and blobs, value for numbers)."""
    meta = shape.metadata
    if isinstance(value, str | bytes):
        out = _size_violations(meta, len(value))
        if isinstance(value, str):
            pattern = meta.get("pattern")
            if pattern is not None:
                compiled = _compiled(pattern)
                if compiled is not None and compiled.fullmatch(value) is None:
                    # AWS prints its patterns anchored; botocore's copies lost the leading ^
                    shown = pattern if pattern.startswith(("^", "\\A")) else f"^{pattern}"
                    out.append(f"Member must satisfy regular expression pattern: {shown}")
            enum = meta.get("enum")
            if enum and value not in enum:
                out.append(f"Member must satisfy enum value set: {_enum_text(enum)}")
        return out
    if isinstance(value, int | float) and not isinstance(value, bool):
        out = []
        if "min" in meta and value < meta["min"]:
            out.append(f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            out.append(f"Member must have value less than or equal to {meta['max']}")
        return out
    return []


def _size_violations(meta: Mapping[str, Any], size: int) -> list[str]:
    out = []
    if "min" in meta and size < meta["min"]:
        out.append(f"Member must have length greater than or equal to {meta['min']}")
    if "max" in meta and size > meta["max"]:
        out.append(f"Member must have length less than or equal to {meta['max']}")
    return out


@functools.cache
def _compiled(pattern: str) -> _Pattern | None:
    """Model patterns are Java regexes, matched in full. The Java-only classes the hosting models use are
    translated; Unicode categories (``\\p{L}`` in tag patterns) need the ``regex`` module, which
    ``re`` cannot stand in for. A pattern neither compiles is skipped, never guessed at."""
    for java, python in _JAVA_SYNTAX:
        pattern = pattern.replace(java, python)
    try:
        return re.compile(pattern)
    except re.error:
        pass
    try:
        compiled: _Pattern = regex.compile(pattern)
    except regex.error:
        return None
    return compiled


def _parse_timestamp_text(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _join(path: str, name: str) -> str:
    name = name[:1].lower() + name[1:]
    return f"{path}.{name}" if path else name


def _at(path: str, value: Any, constraint: str) -> str:
    return f"Value {_render(value)} at '{path}' failed to satisfy constraint: {constraint}"


def _render(value: Any) -> str:
    if value is None:
        return "null"
    text = _text(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return f"'{text}'"


def _text(value: Any, depth: int = 0) -> str:
    """Java-like rendering (``[a, b]``, ``{k=v}``), as AWS prints values in these messages.

    Nesting past a few levels prints as ``...``: the message is cut at _MAX_VALUE_CHARS anyway, and
    a request nested hundreds deep must not exhaust the stack."""
    if depth > _MAX_DEPTH:
        return "..."
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return _items((f"{k}={_text(v, depth + 1)}" for k, v in value.items()), "{", "}")
    if isinstance(value, list | tuple):
        return _items((_text(v, depth + 1) for v in value), "[", "]")
    return "null" if value is None else str(value)


def _items(parts: Iterator[str], start: str, end: str) -> str:
    """Join lazily, stopping past the display limit: a huge container costs no more than a small one."""
    text = start
    for i, part in enumerate(parts):
        text += f", {part}" if i else part
        if len(text) > _MAX_VALUE_CHARS:
            return text
    return text + end


def _enum_text(values: Sequence[str]) -> str:
    shown: list[str] = []
    size = 0
    for value in values:
        size += len(value) + 2
        if size > _MAX_ENUM_CHARS:
            return f"[{', '.join(shown)}, ... {len(values) - len(shown)} more]"
        shown.append(value)
    return f"[{', '.join(shown)}]"
