"""Default decoders and encoders, one module per content type, registered in `CODECS` below.

Content types match exactly after parameters are dropped (`application/json; charset=utf-8` is JSON),
which is kinder than the sagemaker-inference toolkit's exact string match. Codec modules import numpy
inside their functions, so a model that never uses a default codec never pays for importing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from moorage.serving.codecs import csv, json, npy, npz


class Codec(Protocol):
    """A codec module: `decode` gets the request body (str for JSON and CSV, else bytes)."""

    def decode(self, body: bytes | str) -> Any: ...

    def encode(self, obj: Any) -> bytes: ...


CODECS: Mapping[str, Codec] = {
    "application/json": json,
    "text/csv": csv,
    "application/x-npy": npy,
    "application/x-npz": npz,
}


def media_type(value: str) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json`."""
    return value.split(";", 1)[0].strip().lower()


def find(content_type: str | None) -> Codec | None:
    return CODECS.get(media_type(content_type)) if content_type else None
