"""Images registered with `moorage image add`, kept in the state store and read when a model is prepared.

A registration says what stands in for an image URI: the Python version, the packages, the image's
environment variables and its command. A command that only starts the SageMaker inference toolkit's
model server is served by the built-in runtime (moorage/images/toolkit.py); any other command is run as
the instance, under the SageMaker container contract (moorage/compute/command.py).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from moorage.images.dockerfile import parse_dockerfile
from moorage.images.python import RUNTIME_MINIMUM, find_python, runtime_version, version_tuple
from moorage.images.toolkit import drop_server_packages, starts_toolkit_server
from moorage.store import Store
from moorage.store.tables import ImageRow


class ImageError(Exception):
    """A registration refused; str() says why and what to do."""


@dataclass(frozen=True)
class RegisteredImage:
    uri: str
    source: str  # "Dockerfile /path", "requirements /path" or "command line"
    python: str  # X.Y
    requirements: tuple[str, ...]
    command: tuple[str, ...] | None  # as registered (what `docker run IMAGE serve` would run)
    own_server: bool  # the command runs its own HTTP server; False: the built-in runtime serves
    environment: Mapping[str, str] = field(default_factory=dict)
    python_note: str | None = None  # set when --python overrode what the image asks for
    dropped: tuple[str, ...] = ()  # requirements left out: model servers the built-in runtime replaces
    registered_at: float = 0.0


class ImageLookup(Protocol):
    def get(self, uri: str) -> RegisteredImage | None: ...


class ImageRegistry:
    """Registered images in the store (the CLI writes, the server reads)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, image: RegisteredImage) -> None:
        with self.store.session() as session:
            session.merge(
                ImageRow(
                    uri=image.uri,
                    source=image.source,
                    python=image.python,
                    python_note=image.python_note,
                    requirements=list(image.requirements),
                    command=None if image.command is None else list(image.command),
                    own_server=image.own_server,
                    environment=dict(image.environment),
                    dropped=list(image.dropped),
                    registered_at=image.registered_at,
                )
            )

    def get(self, uri: str) -> RegisteredImage | None:
        with self.store.session() as session:
            row = session.get(ImageRow, uri)
            return None if row is None else _image(row)

    def list(self) -> list[RegisteredImage]:
        with self.store.session() as session:
            return [_image(row) for row in session.query(ImageRow).order_by(ImageRow.uri)]

    def remove(self, uri: str) -> bool:
        with self.store.session() as session:
            row = session.get(ImageRow, uri)
            if row is not None:
                session.delete(row)
            return row is not None


def _image(row: ImageRow) -> RegisteredImage:
    return RegisteredImage(
        uri=row.uri,
        source=row.source,
        python=row.python,
        requirements=tuple(row.requirements),
        command=None if row.command is None else tuple(row.command),
        own_server=row.own_server,
        environment=dict(row.environment),
        python_note=row.python_note,
        dropped=tuple(row.dropped),
        registered_at=row.registered_at,
    )


def from_dockerfile(
    uri: str,
    dockerfile: Path,
    python: str | None = None,
    command: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> RegisteredImage:
    """A registration read from a Dockerfile; ``python``/``command``/``environment`` override it."""
    image = parse_dockerfile(dockerfile)
    words = _serve(command) if command else image.command()
    return _registration(
        uri,
        f"Dockerfile {dockerfile.resolve()}",
        asked=image.python,
        override=python,
        requirements=image.requirements,
        command=words,
        environment={**image.environment, **(environment or {})},
    )


def from_requirements(
    uri: str,
    python: str,
    requirements: Path | None = None,
    command: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> RegisteredImage:
    """A registration from an explicit Python version, requirements file and command."""
    packages: list[str] = []
    if requirements is not None:
        try:
            lines = requirements.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageError(f"Cannot read {requirements}: {exc}") from None
        packages = [line.split(" #", 1)[0].strip() for line in lines]
        packages = [line for line in packages if line and not line.startswith("#")]
    source = f"requirements {requirements.resolve()}" if requirements is not None else "command line"
    return _registration(
        uri,
        source,
        asked=None,
        override=python,
        requirements=packages,
        command=_serve(command) if command else None,
        environment=dict(environment or {}),
    )


def _serve(command: str) -> list[str]:
    """``--command`` as SageMaker runs an image: with the argument ``serve``."""
    try:
        return [*shlex.split(command), "serve"]
    except ValueError as exc:
        raise ImageError(f"Cannot read --command {command!r}: {exc}") from None


def _registration(
    uri: str,
    source: str,
    *,
    asked: str | None,
    override: str | None,
    requirements: Sequence[str],
    command: Sequence[str] | None,
    environment: dict[str, str],
) -> RegisteredImage:
    python, note = choose_python(uri, asked, override)
    environment.pop("PATH", None)  # the environment's own bin directory goes first on PATH here
    own_server = command is not None and not starts_toolkit_server(command)
    dropped: list[str] = []
    kept = list(requirements)
    if not own_server:
        kept, dropped = drop_server_packages(requirements)
    return RegisteredImage(
        uri=uri,
        source=source,
        python=python,
        requirements=tuple(kept),
        command=None if command is None else tuple(command),
        own_server=own_server,
        environment=environment,
        python_note=note,
        dropped=tuple(dropped),
        registered_at=time.time(),
    )


def choose_python(uri: str, asked: str | None, override: str | None) -> tuple[str, str | None]:
    """(X.Y to build with, note of an override): refuse what cannot be honoured rather than substitute."""
    hint = f"Pass --python {runtime_version()} to use the runtime's own Python instead, explicitly."
    version = override or asked or runtime_version()
    parsed = version_tuple(version)
    if parsed is None:
        raise ImageError(f"Image {uri}: {version!r} is not a Python version (expected X.Y, e.g. 3.11).")
    if parsed < RUNTIME_MINIMUM:
        raise ImageError(
            f"Image {uri} asks for Python {version}, but the built-in runtime needs Python "
            f"{RUNTIME_MINIMUM[0]}.{RUNTIME_MINIMUM[1]} or newer. {hint}"
        )
    path, why = find_python(version)
    if path is None:
        raise ImageError(f"Image {uri} asks for Python {version}, which is not available: {why}. {hint}")
    note = None
    if override and asked and version_tuple(asked) != parsed:
        note = f"the image asks for Python {asked}; --python {override} overrides it"
    return f"{parsed[0]}.{parsed[1]}", note
