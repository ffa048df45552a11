"""S3DataType ManifestFile: a JSON array naming the objects a transform job reads, in order.

    [{"prefix": "s3://bucket/some/prefix/"}, "relative/path/a", "relative/path/b"]

Each entry after the prefix is appended to it as written (SageMaker concatenates; it adds no "/").
"""

from __future__ import annotations

import json


class ManifestError(ValueError):
    """A manifest that cannot be read; str() says what is wrong and which member named it."""


def read_manifest(body: bytes, field: str) -> list[str]:
    """The object URIs a manifest lists, in its order; `field` is the member that named the manifest
    (for messages, e.g. "TransformInput.DataSource.S3DataSource.S3Uri")."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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
    uris: list[str] = []
    for position, entry in enumerate(value[1:], 2):
        if not isinstance(entry, str) or not entry:
            raise ManifestError(
                f"the manifest named by {field}: entry {position} must be a non-empty relative path string, "
                f"not {_show(entry)}"
            )
        uris.append(prefix + entry)
    if not uris:
        raise ManifestError(f"the manifest named by {field} lists no objects after its prefix")
    return uris


def _show(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def manifest_entries(body: bytes, field: str) -> tuple[str, list[str]]:
    """The manifest's prefix and its entries as written (for naming outputs relative to the prefix);
    the same checks and errors as read_manifest."""
    uris = read_manifest(body, field)
    prefix: str = json.loads(body)[0]["prefix"]
    return prefix, [uri[len(prefix) :] for uri in uris]
