"""S3DataType ManifestFile: a JSON array naming the objects a transform job reads, in order.

    [{"prefix": "s3://bucket/some/prefix/"}, "relative/path/a", "relative/path/b"]

Each entry after the prefix is appended to it as written (SageMaker concatenates; it adds no "/").
An entry also names its output (``<S3OutputPath>/<entry>.out``), so an entry with a "." or ".."
path segment is refused: it could read outside the prefix and write outside the output path.
"""

from __future__ import annotations

import json
from typing import Any

from moorage.jobs.transform.filters import FilterError, JsonError, load_json, render_row


class ManifestError(ValueError):
    """A manifest that cannot be read; str() says what is wrong and which member named it."""


def read_manifest(body: bytes, field: str) -> list[str]:
    """The object URIs a manifest lists, in its order; `field` is the member that named the manifest
    (for messages, e.g. "TransformInput.DataSource.S3DataSource.S3Uri")."""
    prefix, entries = manifest_entries(body, field)
    return [prefix + entry for entry in entries]


def manifest_entries(body: bytes, field: str) -> tuple[str, list[str]]:
    """The manifest's prefix and its entries as written (for naming outputs relative to the prefix);
    the same checks and errors as read_manifest."""
    try:
        value = load_json(body)
    except JsonError as exc:
        raise ManifestError(f"the manifest named by {field} is not valid JSON: {exc}") from None
    if not isinstance(value, list) or not value:
        raise ManifestError(
            f"the manifest named by {field} must be a JSON array starting with "
            '{"prefix": "s3://bucket/prefix/"} followed by the objects\' relative paths'
        )
    head = value[0]
    if not isinstance(head, dict) or not isinstance(head.get("prefix"), str) or not head["prefix"]:
        raise ManifestError(
            f"the manifest named by {field} must start with "
            f'{{"prefix": "s3://bucket/prefix/"}}, not {_show(head)}'
        )
    if set(head) != {"prefix"}:
        extra = sorted(set(head) - {"prefix"})
        raise ManifestError(f"the manifest named by {field}: its first entry has unknown keys {extra}")
    prefix: str = head["prefix"]
    problem = _unusable(prefix)
    if problem:
        raise ManifestError(f"the manifest named by {field}: its prefix {problem}")
    entries: list[str] = []
    for position, entry in enumerate(value[1:], 2):
        if not isinstance(entry, str) or not entry:
            raise ManifestError(
                f"the manifest named by {field}: entry {position} must be a non-empty relative path string, "
                f"not {_show(entry)}"
            )
        problem = _unusable(entry) or _dot_segment(entry)
        if problem:
            raise ManifestError(f"the manifest named by {field}: entry {position} ({_show(entry)}) {problem}")
        entries.append(entry)
    if not entries:
        raise ManifestError(f"the manifest named by {field} lists no objects after its prefix")
    return prefix, entries


def _unusable(text: str) -> str | None:
    """Why `text` cannot be part of an object's name: a NUL, or a lone surrogate ("\\ud800" is valid
    JSON but not a character that can be written as UTF-8, so no key or file can have it)."""
    if "\0" in text:
        return "holds a NUL character, which no object name can"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which no object name can"
    return None


def _dot_segment(path: str) -> str | None:
    if any(segment in (".", "..") for segment in path.split("/")):
        return (
            'has a "." or ".." path segment; name the object by its path below the prefix '
            "(outputs are written below S3OutputPath under the same name)"
        )
    return None


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # a RawNumber, or nested too deeply
        try:
            text = render_row(value, "json")
        except FilterError:
            text = "a value nested too deeply to show"
    return text if len(text) <= 80 else text[:77] + "..."
