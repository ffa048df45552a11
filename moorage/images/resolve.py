"""What an image URI becomes here: a Python environment, and either the built-in runtime or a command.

Order: an image registered with `moorage image add` (the user said what it is), then a SageMaker
framework image (moorage/images/frameworks.py), else the built-in runtime with the model's own
``code/requirements.txt``. The description is written to the endpoint log in every case.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from moorage.images.frameworks import parse_framework_image
from moorage.images.python import runtime_version
from moorage.images.registry import ImageLookup, RegisteredImage

# what the built-in runtime itself imports, for an environment that cannot see the server's packages
RUNTIME_PACKAGES = ("httptools>=0.6", "numpy")


@dataclass(frozen=True)
class ImageRuntime:
    description: str  # one line for the endpoint log
    label: str  # names the image and its packages in a FailureReason ("" for none)
    requirements: tuple[str, ...] = ()  # installed with (or, for own servers, instead of) the model's
    python: str | None = None  # X.Y other than the runtime's own; None: the runtime's interpreter
    command: tuple[str, ...] | None = None  # an own HTTP server (SageMaker container contract)
    environment: Mapping[str, str] = field(default_factory=dict)  # the image's ENV, under the model's
    wheels_only: tuple[str, ...] = ()  # packages never built from source
    model_requirements: bool = True  # also install the model's code/requirements.txt


def resolve_image(image_uri: str | None, registry: ImageLookup | None) -> ImageRuntime:
    uri = (image_uri or "").strip()
    if not uri:
        return _plain("no image given")
    registered = registry.get(uri) if registry is not None else None
    if registered is not None:
        return _registered(registered)
    framework = parse_framework_image(uri)
    if framework is None:
        return _plain(f"image {uri}: not a known framework image and not registered")
    packages = ", ".join(framework.requirements)
    notes = "".join(f"; {note}" for note in framework.notes)
    return ImageRuntime(
        description=(
            f"image {uri}: {framework.title} framework image → built-in runtime with {packages}, "
            f"plus the model's code/requirements.txt if it has one{notes}"
        ),
        label=f"image {uri} ({framework.title}: {packages})",
        requirements=framework.requirements,
        wheels_only=framework.wheels_only,
    )


def _plain(what: str) -> ImageRuntime:
    return ImageRuntime(
        description=f"{what} → built-in runtime with code/requirements.txt (if the model has one)",
        label="",
    )


def _registered(image: RegisteredImage) -> ImageRuntime:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(image.registered_at))
    python = None if image.python == runtime_version() else image.python
    packages = ", ".join(image.requirements) or "no packages"
    origin = f"image {image.uri}: registered from {image.source} at {when}"
    notes = f"; {image.python_note}" if image.python_note else ""
    label = f"image {image.uri} (registered, Python {image.python}: {packages})"
    if image.own_server and image.command is not None:
        command = " ".join(image.command)
        return ImageRuntime(
            description=(
                f"{origin} → its own server `{command}` with Python {image.python} and {packages} "
                f"(SageMaker container contract: SAGEMAKER_BIND_TO_PORT, GET /ping, POST /invocations){notes}"
            ),
            label=label,
            requirements=image.requirements,
            python=python,
            command=image.command,
            environment=image.environment,
            model_requirements=False,
        )
    how = (
        "its command only starts the SageMaker inference toolkit's model server, so " if image.command else ""
    )
    dropped = (
        f"; left out: {', '.join(image.dropped)} (model servers never run here)" if image.dropped else ""
    )
    return ImageRuntime(
        description=(
            f"{origin} → {how}built-in runtime in the image's environment (Python {image.python}, "
            f"{packages}, plus the model's code/requirements.txt if it has one){dropped}{notes}"
        ),
        label=label,
        requirements=image.requirements + (RUNTIME_PACKAGES if python else ()),
        python=python,
        environment=image.environment,
    )
