"""Which objects a transform job reads, in order, and the name each one's output gets.

S3Prefix: every object under the prefix, in key order; ManifestFile: the manifest's list, in its order.
An output is ``<S3OutputPath>/<the input's name relative to the prefix>.out``. Blocking: run on a thread."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from moorage.jobs.objects import ObjectError, child, list_objects, read_object, relative_name
from moorage.jobs.transform.records import read_manifest

INPUT_FIELD = "TransformInput.DataSource.S3DataSource.S3Uri"
OUTPUT_FIELD = "TransformOutput.S3OutputPath"


@dataclass(frozen=True)
class InputObject:
    uri: str
    output: str  # where its output goes


def input_objects(job: dict[str, Any]) -> list[InputObject]:
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    uri = source["S3Uri"]
    out = job["TransformOutput"]["S3OutputPath"]
    if source["S3DataType"] == "ManifestFile":
        body = read_object(uri, INPUT_FIELD)
        uris = read_manifest(body, INPUT_FIELD)
        prefix = _manifest_prefix(body)
        names = [u[len(prefix) :].lstrip("/") for u in uris]  # the manifest's own relative paths
    else:
        uris = [u for u in list_objects(uri, INPUT_FIELD) if not u.endswith("/")]  # "folder" markers
        names = [relative_name(uri, u) for u in uris]
    if not uris:
        raise ObjectError(
            f"No input objects found at {uri} ({INPUT_FIELD}). Upload the input data there, or point "
            "S3Uri at the prefix or manifest that holds it."
        )
    for u, name in zip(uris, names, strict=True):
        if ".." in name.split("/"):  # an S3 key may hold one; a local output would land outside
            raise ObjectError(
                f"Input {u} has a '..' in its name below {uri} ({name}), so its output would not be "
                f"under {OUTPUT_FIELD}. Rename the object."
            )
    return [InputObject(u, child(out, f"{name}.out")) for u, name in zip(uris, names, strict=True)]


def _manifest_prefix(body: bytes) -> str:
    """The manifest's `{"prefix": …}` (read_manifest has checked the manifest's shape already)."""
    return str(json.loads(body)[0]["prefix"])
