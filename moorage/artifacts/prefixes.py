"""Map uncompressed S3Prefix objects onto model-directory paths, by SageMaker's rules.

Each object under the prefix becomes ``<model_dir>/<key minus prefix>``. Deployment fails, as it
does on SageMaker, for names that are empty, ``.``/``..``, contain NUL or a segment over 255 bytes,
for 0-byte "folder" objects ending in ``/``, and when one name is both a file and a directory.
"""

from __future__ import annotations

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.fetch import ObjectInfo
from moorage.artifacts.unpack import UnpackLimits

_MAX_SEGMENT_BYTES = 255


def layout_prefix(
    uri: str, prefix: str, objects: list[ObjectInfo], limits: UnpackLimits
) -> list[tuple[ObjectInfo, str]]:
    """Pair every object with its relative path in the model directory, or explain why it cannot be."""

    def fail(reason: str) -> ArtifactError:
        return ArtifactError(f"Cannot lay out the model data under {uri}: {reason}")

    if not objects:
        raise ArtifactError(
            f"No objects found under {uri}. Check ModelDataSource.S3DataSource.S3Uri and that the "
            "files were uploaded under that prefix."
        )
    if len(objects) > limits.max_members:
        raise fail(f"it holds {len(objects)} objects, more than the limit of {limits.max_members}.")
    total = sum(info.size for info in objects)
    if total > limits.max_total_bytes:
        raise fail(f"its objects add up to {total} bytes, more than the limit of {limits.max_total_bytes}.")

    placed: list[tuple[ObjectInfo, str]] = []
    for info in objects:
        rel = info.key[len(prefix) :]
        if prefix and not prefix.endswith("/") and rel.startswith("/"):
            rel = rel[1:]
        if info.key.endswith("/"):
            kind = "0-byte folder object" if info.size == 0 else "object"
            raise fail(f"the {kind} {info.key!r} ends in '/'. Delete it; folders are implied by key names.")
        if not rel:
            raise fail(
                f"object {info.key!r} would have an empty name. Use S3DataType S3Object for a single "
                "object, or a prefix that ends in '/'."
            )
        for segment in rel.split("/"):
            problem = _segment_problem(segment)
            if problem:
                raise fail(f"object {info.key!r} has {problem}. Rename the object.")
        placed.append((info, rel))

    files = {rel for _, rel in placed}
    for _, rel in placed:
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory in files:
                raise fail(
                    f"{directory!r} would be both a file and a directory (because of {rel!r}). "
                    "Rename one of the objects."
                )
    return placed


def _segment_problem(segment: str) -> str | None:
    if segment == "":
        return "an empty path segment ('//')"
    if segment in (".", ".."):
        return f"the path segment {segment!r}"
    if "\x00" in segment:
        return "a NUL character in its name"
    if len(segment.encode("utf-8", "surrogateescape")) > _MAX_SEGMENT_BYTES:
        return f"a path segment longer than {_MAX_SEGMENT_BYTES} bytes"
    return None
