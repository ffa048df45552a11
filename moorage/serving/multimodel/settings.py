"""The multi-model instance's settings, read once from the environment (see the package docstring)."""

from __future__ import annotations

import json
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from moorage.compute.procfs import total_memory_bytes
from moorage.images import RegisteredImage
from moorage.serving.errors import StartupFailure

PREFIX = "MOORAGE_MME_"
SOURCE_VARIABLE = "MOORAGE_MME_SOURCE"
DEFAULT_DISK_BYTES = 20 * 1024**3


@dataclass(frozen=True, slots=True)
class MultiModelSettings:
    source: str
    memory_bytes: int
    disk_bytes: int
    cache_dir: Path
    caching: bool
    ready_wait: float
    invocation_timeout: float
    s3_store: tuple[str | None, bool] | None
    image: RegisteredImage | None
    model_workers: int
    command: tuple[str, ...] | None = None  # the image's own multi-model server (container.py)
    python: str = sys.executable  # what a `python` command[0] runs as (the image's environment)
    image_uri: str = ""  # the container's Image: a framework image decides each model's packages


def take_settings(environ: MutableMapping[str, str]) -> MultiModelSettings:
    """Read the MOORAGE_MME_* variables and remove them, so model processes (which inherit the rest)
    run as single-model instances. Raises StartupFailure naming the variable that is unusable."""
    own = {name: environ.pop(name) for name in list(environ) if name.startswith(PREFIX)}
    source = own.get(SOURCE_VARIABLE, "").strip()
    if not source:
        raise StartupFailure(f"{SOURCE_VARIABLE} is empty: set it to the models' prefix")
    caching = own.get("MOORAGE_MME_CACHING", "Enabled").strip() or "Enabled"
    if caching not in ("Enabled", "Disabled"):
        raise StartupFailure(f"MOORAGE_MME_CACHING={caching!r} must be Enabled or Disabled")
    cache_dir = own.get("MOORAGE_MME_CACHE_DIR", "").strip()
    if not cache_dir:
        raise StartupFailure("MOORAGE_MME_CACHE_DIR is empty: set it to the directory for downloaded models")
    return MultiModelSettings(
        source=source,
        memory_bytes=_number(own, "MOORAGE_MME_MEMORY_BYTES", total_memory_bytes() or None, int),
        disk_bytes=_number(own, "MOORAGE_MME_DISK_BYTES", DEFAULT_DISK_BYTES, int),
        cache_dir=Path(cache_dir).absolute(),
        caching=caching == "Enabled",
        ready_wait=_number(own, "MOORAGE_MME_READY_WAIT_SECONDS", 50.0, float),
        invocation_timeout=_number(own, "MOORAGE_MME_INVOCATION_TIMEOUT_SECONDS", 60.0, float),
        s3_store=_store(own.get("MOORAGE_MME_S3_STORE", "")),
        image=_image(own.get("MOORAGE_MME_IMAGE", "")),
        model_workers=max(1, _number(own, "MOORAGE_MME_MODEL_WORKERS", 1, int)),
        command=_command(own.get("MOORAGE_MME_COMMAND", "")),
        python=own.get("MOORAGE_MME_PYTHON", "").strip() or sys.executable,
        image_uri=own.get("MOORAGE_MME_IMAGE_URI", "").strip(),
    )


def _number(own: dict[str, str], name: str, default: Any, kind: type) -> Any:
    text = own.get(name, "").strip()
    if not text:
        if default is None:
            raise StartupFailure(f"{name} is not set: the fleet must give the instance its value")
        return default
    try:
        value = kind(text)
    except ValueError:
        raise StartupFailure(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise StartupFailure(f"{name}={text!r} must be more than 0")
    return value


def _store(text: str) -> tuple[str | None, bool] | None:
    if not text.strip():
        return None
    try:
        endpoint, anonymous = json.loads(text)
    except (ValueError, TypeError):
        raise StartupFailure(f"MOORAGE_MME_S3_STORE={text!r} is not JSON [endpoint_url, anonymous]") from None
    return (None if endpoint is None else str(endpoint)), bool(anonymous)


def _command(text: str) -> tuple[str, ...] | None:
    if not text.strip():
        return None
    try:
        words = json.loads(text)
    except ValueError:
        words = None
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and w for w in words):
        raise StartupFailure(
            f"MOORAGE_MME_COMMAND={text!r} is not a JSON list of the image's server command words"
        )
    return tuple(words)


def _image(text: str) -> RegisteredImage | None:
    if not text.strip():
        return None
    try:
        raw = json.loads(text)
        known = {f.name for f in fields(RegisteredImage)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known}
        return RegisteredImage(**values)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        raise StartupFailure("MOORAGE_MME_IMAGE is not the JSON of a registered image") from None
