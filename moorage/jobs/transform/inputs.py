"""Which objects a transform job reads, in order, and the name each one's output gets.

S3Prefix: every object under the prefix, in key order, except what lies under S3OutputPath (a job whose
output goes below its input must not read its own outputs); ManifestFile: the manifest's list, in its
order. An output is ``<S3OutputPath>/<the input's name after the prefix's last />.out``. With
--credentials, a location on the server's disk must be below the server's local data root
(moorage/jobs/local_access.py). Blocking: run on a thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, child, list_objects, location, read_object, relative_name
from moorage.jobs.transform.manifest import manifest_entries

INPUT_FIELD = "TransformInput.DataSource.S3DataSource.S3Uri"
OUTPUT_FIELD = "TransformOutput.S3OutputPath"


@dataclass(frozen=True)
class InputObject:
    uri: str
    output: str  # where its output goes


def input_objects(
    job: dict[str, Any],
    access: LocalAccess = LocalAccess(),
) -> list[InputObject]:
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    uri = source["S3Uri"]
    out = job["TransformOutput"]["S3OutputPath"]
    access.check(uri, INPUT_FIELD)
    access.check(out, OUTPUT_FIELD)
    if source["S3DataType"] == "ManifestFile":
        body = read_object(uri, INPUT_FIELD)
        prefix, entries = manifest_entries(body, INPUT_FIELD)
        uris = [prefix + entry for entry in entries]
        names = [entry.lstrip("/") for entry in entries]  # the manifest's own relative paths
    else:
        below = _under(out) if _under(out) != _under(uri) else None  # outputs beside inputs: kept
        uris = [
            u
            for u in list_objects(uri, INPUT_FIELD)
            if not u.endswith("/") and not (below and _under(u).startswith(below))  # folder markers
        ]
        names = [relative_name(uri, u) for u in uris]
    if not uris:
        raise ObjectError(
            f"No input objects found at {uri} ({INPUT_FIELD}). Upload the input data there, or point "
            "S3Uri at the prefix or manifest that holds it."
        )
    for u, name in zip(uris, names, strict=True):
        access.check(u, INPUT_FIELD)  # a manifest's entries, a symbolic link in a listed folder
        if ".." in name.split("/"):  # an S3 key may hold one; a local output would land outside
            raise ObjectError(
                f"Input {u} has a '..' in its name below {uri} ({name}), so its output would not be "
                f"under {OUTPUT_FIELD}. Rename the object."
            )
    return [InputObject(u, child(out, f"{name}.out")) for u, name in zip(uris, names, strict=True)]


def _under(uri: str) -> str:
    """`uri` in one spelling (file:// and plain paths alike) with a trailing `/`, to compare prefixes."""
    try:
        where = location(uri, OUTPUT_FIELD)
    except ObjectError:
        return uri
    return where.uri.rstrip("/") + "/"
