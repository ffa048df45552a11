"""Per-model Python environments for ``code/requirements.txt``, built with uv and shared by content.

The venv sees the server's own site-packages (so the serving runtime and its dependencies stay
importable) with the user's pins layered on top. Environments are keyed by the requirements text
and the interpreter, built in a temp dir, renamed into place under a lock (``--relocatable`` keeps
entry-point scripts working after the rename), and reused by every model with the same pins.
"""

from __future__ import annotations

import os
import platform
import site
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.artifacts.cache import cached_dir, digest_of
from moorage.artifacts.errors import ArtifactError
from moorage.images.python import find_python

_TAIL_CHARS = 600
_CONTAINER_MODEL_DIR = "/opt/ml/model"
_LAYOUT_VERSION = "uv-venv-2"
_CHATTER = ("Using Python", "Using CPython", "Creating virtual environment", "Activate with")  # not in errors


@dataclass(frozen=True)
class ImagePackages:
    """What an image adds to a model's environment (moorage/images/resolve.py decides it)."""

    label: str = ""  # names the image and its packages in messages and FailureReasons
    requirements: tuple[str, ...] = ()
    wheels_only: tuple[str, ...] = ()  # never built from source
    python: str | None = None  # X.Y other than the server's own interpreter


def find_requirements(
    model_dir: Path, environment: Mapping[str, Any], log: Callable[[str], None], code_dir: Path | None = None
) -> Path | None:
    """The requirements file to install: in SAGEMAKER_SUBMIT_DIRECTORY if it is local, else code/.

    ``code_dir`` is the unpacked archive SAGEMAKER_SUBMIT_DIRECTORY named; only it is looked in then.
    """
    if code_dir is not None:
        requirements = code_dir / "requirements.txt"
        return requirements if requirements.is_file() else None
    candidates: list[Path] = []
    submit = str(environment.get("SAGEMAKER_SUBMIT_DIRECTORY") or "").strip()
    if submit:
        submit_dir = _local_submit_dir(submit, model_dir)
        if submit_dir is None:
            log(f"SAGEMAKER_SUBMIT_DIRECTORY={submit} is not a local directory; looking in code/ instead")
        else:
            candidates.append(submit_dir / "requirements.txt")
    candidates.append(model_dir / "code" / "requirements.txt")
    return next((path for path in candidates if path.is_file()), None)


def ensure_environment(
    requirements: Path | None,
    model_dir: Path,
    cache_dir: Path,
    log: Callable[[str], None],
    image: ImagePackages | None = None,
) -> Path:
    """Return a venv with ``requirements`` (and the image's packages) installed, building it only if no
    identical one exists."""
    label = _label(requirements, model_dir) if requirements is not None else ""
    text = ""
    if requirements is not None:
        try:
            text = requirements.read_bytes().decode("utf-8", "surrogateescape")
        except OSError as exc:
            raise ArtifactError(f"Cannot read {label}: {exc}") from None
    image = image or ImagePackages()
    if image.label:
        label = f"{image.label} and {label}" if label else image.label
    interpreter = sys.executable
    if image.python is not None:
        found, why = find_python(image.python)
        if found is None:
            raise ArtifactError(f"Cannot build the environment for {label}: {why}.")
        interpreter = found
    key = digest_of(
        _LAYOUT_VERSION, text, sys.version, platform.platform(), sys.executable, sys.prefix,
        "\n".join(image.requirements), ",".join(image.wheels_only), interpreter,
    )  # fmt: skip
    cwd = requirements.parent if requirements is not None else cache_dir
    shared = ["--system-site-packages"] if image.python is None else []
    install = ["-r", str(requirements)] if requirements is not None else []
    install += [*image.requirements, *(f"--only-binary={name}" for name in image.wheels_only)]

    def build(env_dir: Path) -> None:
        log(f"Creating a Python environment for {label}")
        uv = _uv_binary()
        _run_uv(
            [uv, "venv", "--no-progress", *shared, "--relocatable", "--python", interpreter, str(env_dir)],
            f"Creating the Python environment for {label}", cwd, log,
        )  # fmt: skip
        if image.python is None:
            _link_server_site_packages(env_dir)
        else:
            _link_runtime_source(env_dir)
        _run_uv(
            [uv, "pip", "install", "--no-progress", "--python", str(env_dir / "bin" / "python"), *install],
            f"Installing {label}", cwd, log,
        )  # fmt: skip

    env_dir, cached = cached_dir(cache_dir, "envs", key, build)
    if cached:
        log(f"Python environment for {label} is cached at {env_dir}; nothing to install")
    else:
        log(f"Python environment for {label} is ready at {env_dir}")
    return env_dir


def _local_submit_dir(submit: str, model_dir: Path) -> Path | None:
    """Map the SDK's ``/opt/ml/model/...`` onto the model dir; accept local paths; ignore s3:// etc."""
    if submit.startswith("file://"):
        submit = submit[len("file://") :]
    elif "://" in submit:
        return None
    if submit == _CONTAINER_MODEL_DIR or submit.startswith(_CONTAINER_MODEL_DIR + "/"):
        return model_dir / submit[len(_CONTAINER_MODEL_DIR) :].lstrip("/")
    path = Path(submit).expanduser()
    path = path if path.is_absolute() else model_dir / path
    return path if path.is_dir() else None


def _label(requirements: Path, model_dir: Path) -> str:
    try:
        return str(requirements.relative_to(model_dir))
    except ValueError:
        return str(requirements)


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        raise ArtifactError(
            "Cannot install code/requirements.txt: the uv executable was not found. "
            "Install the 'uv' Python package next to the server."
        ) from None


def _link_server_site_packages(env_dir: Path) -> None:
    """When the server itself runs in a venv, make that venv's packages visible too.

    ``--system-site-packages`` only exposes the *base* interpreter's packages; a ``.pth`` file adds
    the server's own site-packages after the model venv's, so the user's pins still win. It calls
    ``site.addsitedir`` rather than listing the paths so that the ``.pth`` files *there* run too:
    an editable install of the server is only importable through its own ``.pth`` import hook.
    """
    if sys.prefix == sys.base_prefix:
        return
    lib = env_dir / "lib"
    targets = sorted(lib.glob("python*/site-packages"))
    if not targets:
        return
    paths = [path for path in site.getsitepackages() if Path(path).is_dir()]
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in paths)
    (targets[0] / "_moorage_server_site.pth").write_text(lines)


def _link_runtime_source(env_dir: Path) -> None:
    """Another Python version cannot use the server's compiled packages: expose only Moorage itself
    (pure Python); the runtime's own dependencies are installed into the environment."""
    import moorage

    lib = env_dir / "lib"
    targets = sorted(lib.glob("python*/site-packages"))
    if targets:
        source = Path(moorage.__file__).resolve().parent.parent
        (targets[0] / "_moorage_runtime.pth").write_text(f"{source}\n")


def _run_uv(command: list[str], action: str, cwd: Path, log: Callable[[str], None]) -> None:
    """Run uv, streaming each output line to ``log``; fail with the tail of its output."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update({"NO_COLOR": "1", "UV_PYTHON_DOWNLOADS": "never"})
    tail: deque[str] = deque(maxlen=200)
    try:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ArtifactError(f"{action} failed: cannot run uv ({exc}).") from None
    assert process.stdout is not None
    with process:
        for raw in process.stdout:
            line = raw.rstrip()
            if line:
                log(f"uv: {line}")
                if not line.startswith(_CHATTER):
                    tail.append(line)
    if process.returncode != 0:
        output = " | ".join(tail)
        if len(output) > _TAIL_CHARS:
            output = "…" + output[-_TAIL_CHARS:]
        raise ArtifactError(f"{action} failed (uv exit {process.returncode}): {output or 'no output'}")
