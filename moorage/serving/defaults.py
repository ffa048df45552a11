"""The handlers used where inference.py defines none, built on the codecs in `moorage.serving.codecs`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from moorage.serving import codecs
from moorage.serving.errors import NotAcceptable, RequestError, StartupFailure, UnsupportedMediaType

_SUPPORTED = ", ".join(codecs.CODECS)


def missing_model_fn(program_file: Path, found: bool) -> Callable[[str], NoReturn]:
    """There is no sensible default model: the instance fails to start with this explanation."""
    where = f"{program_file.name} defines no model_fn" if found else f"there is no {program_file}"

    def model_fn(model_dir: str) -> NoReturn:
        raise StartupFailure(
            f"no model_fn to load the model: {where}; define model_fn(model_dir) in "
            f"{program_file.name} (or set SAGEMAKER_PROGRAM) and return the model from it"
        )

    return model_fn


def input_fn(body: bytes | str, content_type: str | None) -> Any:
    """Decodes with the registered codec; an unknown type is 415 and an undecodable body 400.

    The toolkit answers 500 in both cases; these statuses tell the caller what to fix.
    """
    codec = codecs.find(content_type)
    if codec is None:
        raise UnsupportedMediaType(
            f"content type {content_type!r} is not supported by the default input_fn "
            f"(supported: {_SUPPORTED}); define input_fn(input_data, content_type) to accept it"
        )
    try:
        return codec.decode(body)
    except Exception as exc:
        raise RequestError(f"could not decode the {content_type} request body: {exc}") from exc


def predict_fn(data: Any, model: Any) -> Any:
    """Calls the model. Start-up already refused a model that is not callable when predict_fn is missing,
    so that mistake surfaces as a failed instance with a reason, not as a 500 on every request."""
    return model(data)


def output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encodes with the first supported type of a comma-separated Accept list; none is 406.

    Parameters such as `;q=0.9` are ignored, and wildcards inside a list match nothing, as in the
    toolkit (a lone `*/*` never gets here: it is replaced by the default accept). The toolkit
    answers 500 for an unsupported Accept.
    """
    for candidate in accept.split(","):
        name = codecs.media_type(candidate)
        codec = codecs.CODECS.get(name)
        if codec is not None:
            return codec.encode(prediction), name
    raise NotAcceptable(
        f"accept type {accept!r} is not supported by the default output_fn "
        f"(supported: {_SUPPORTED}); define output_fn(prediction, accept) to produce it"
    )
