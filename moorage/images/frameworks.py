"""SageMaker's framework images, read from their ECR URIs and mapped to pinned PyPI packages.

A framework image is the built-in serving contract (``code/inference.py`` with ``model_fn`` …) plus a
framework at a known version. Here it becomes that framework's packages, pinned as the image pins them,
installed for the runtime's Python (3.11) next to the model's own ``code/requirements.txt``. The table
is published in docs/images.md; keep the two in step.

Any region, partition and account is accepted: SageMaker publishes the same images from dozens of
accounts, and mirrors into private registries keep the repository name and tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# <account>.dkr.ecr[-fips].<region>.<domain>/<repository>[:<tag>][@sha256:<digest>]
_ECR = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.[a-z0-9.-]+"
    r"/(?P<repository>[a-z0-9._/-]+?)(?::(?P<tag>[A-Za-z0-9_.-]+))?(?:@sha256:[0-9a-f]{64})?$"
)
_VERSION_BUILD = re.compile(r"^(?P<version>\d+\.\d+)(?:\.\d+)?-(?P<build>\d+)(?:-(?P<rest>.+))?$")
_DLC = re.compile(r"^(?P<version>\d+\.\d+(?:\.\d+)?)-(?P<processor>cpu|gpu)(?:-py(?P<py>\d+))?(?:-.+)?$")
_HUGGINGFACE = re.compile(
    r"^(?P<version>\d+\.\d+(?:\.\d+)?)-transformers(?P<transformers>\d+\.\d+(?:\.\d+)?)"
    r"-(?P<processor>cpu|gpu)(?:-py(?P<py>\d+))?(?:-.+)?$"
)

# framework minor version → the release the image ships (from the images' own requirements/Dockerfiles)
_SKLEARN = {"0.20": "0.20.0", "0.23": "0.23.2", "1.0": "1.0.2", "1.2": "1.2.1", "1.4": "1.4.2"}
_XGBOOST = {
    "0.90": "0.90", "1.0": "1.0.2", "1.2": "1.2.1", "1.3": "1.3.3", "1.5": "1.5.2", "1.7": "1.7.4",
    "2.0": "2.0.3", "3.0": "3.0.5",
}  # fmt: skip
# torch → (torchvision, torchaudio) released with it
_TORCH = {
    "1.13.1": ("0.14.1", "0.13.1"), "2.0.1": ("0.15.2", "2.0.2"), "2.1.0": ("0.16.0", "2.1.0"),
    "2.2.0": ("0.17.0", "2.2.0"), "2.3.0": ("0.18.0", "2.3.0"), "2.4.0": ("0.19.0", "2.4.0"),
    "2.5.1": ("0.20.1", "2.5.1"), "2.6.0": ("0.21.0", "2.6.0"),
}  # fmt: skip
_TORCH_MINOR = {version.rsplit(".", 1)[0]: version for version in _TORCH}
_TENSORFLOW = {
    "2.12": "2.12.1", "2.13": "2.13.1", "2.14": "2.14.1", "2.16": "2.16.1", "2.18": "2.18.0",
    "2.19": "2.19.0",
}  # fmt: skip
_NUMPY_1 = "numpy<2"  # built against NumPy 1.x: NumPy 2 breaks their compiled extensions


@dataclass(frozen=True)
class FrameworkImage:
    """A recognised SageMaker framework image and the packages that stand in for it."""

    uri: str
    title: str  # "SageMaker scikit-learn 1.2-1"
    requirements: tuple[str, ...]  # installed together with the model's code/requirements.txt
    wheels_only: tuple[str, ...]  # never built from source: a missing wheel is an honest failure
    notes: tuple[str, ...] = ()


def parse_framework_image(uri: str) -> FrameworkImage | None:
    """The framework image ``uri`` names, or None when it is not one this table knows."""
    match = _ECR.match(uri.strip())
    if match is None or not match["tag"]:
        return None
    repository, tag = match["repository"].rsplit("/", 1)[-1], match["tag"]
    if repository == "sagemaker-scikit-learn":
        return _sklearn(uri, tag)
    if repository == "sagemaker-xgboost":
        return _xgboost(uri, tag)
    if repository in ("pytorch-inference", "pytorch-inference-graviton"):
        return _pytorch(uri, tag)
    if repository in ("tensorflow-inference", "tensorflow-inference-graviton"):
        return _tensorflow(uri, tag)
    if repository in ("huggingface-pytorch-inference", "huggingface-tensorflow-inference"):
        return _huggingface(uri, tag, tensorflow=repository.startswith("huggingface-tensorflow"))
    return None


def _pin(package: str, minor: str, table: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """``package==X.Y.Z`` from the table, else ``package==X.Y.*`` with a note saying so."""
    release = table.get(minor)
    if release is not None:
        return f"{package}=={release}", ()
    return f"{package}=={minor}.*", (f"{package} {minor} is not in the image table; pinned to {minor}.*",)


def _older(version: str, than: str) -> bool:
    return tuple(int(part) for part in version.split(".")[:2]) < tuple(int(p) for p in than.split("."))


def _python_note(py: str | None) -> tuple[str, ...]:
    if py and py != "311":
        return (f"the image runs Python {py[0]}.{py[1:]}; the runtime's Python 3.11 is used",)
    return ()


def _gpu_note(processor: str | None) -> tuple[str, ...]:
    if processor == "gpu":
        return ("GPU image: the PyPI wheels bring their own CUDA build, used if this machine has a GPU",)
    return ()


def _sklearn(uri: str, tag: str) -> FrameworkImage | None:
    match = _VERSION_BUILD.match(tag)
    if match is None:
        return None
    minor = match["version"]
    pin, notes = _pin("scikit-learn", minor, _SKLEARN)
    requirements = (pin, _NUMPY_1) if _older(minor, "1.4") else (pin,)
    return FrameworkImage(
        uri, f"SageMaker scikit-learn {minor}-{match['build']}", requirements, ("scikit-learn",), notes
    )


def _xgboost(uri: str, tag: str) -> FrameworkImage | None:
    match = _VERSION_BUILD.match(tag)
    if match is None:
        return None
    minor = match["version"]
    pin, notes = _pin("xgboost", minor, _XGBOOST)
    requirements = (pin, _NUMPY_1) if _older(minor, "2.1") else (pin,)
    return FrameworkImage(
        uri, f"SageMaker XGBoost {minor}-{match['build']}", requirements, ("xgboost",), notes
    )


def _torch_requirements(version: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    release = version if version in _TORCH else _TORCH_MINOR.get(".".join(version.split(".")[:2]))
    if release is None:
        minor = ".".join(version.split(".")[:2])
        return (f"torch=={minor}.*",), (f"torch {minor} is not in the image table; pinned to {minor}.*",)
    vision, audio = _TORCH[release]
    requirements = (f"torch=={release}", f"torchvision=={vision}", f"torchaudio=={audio}")
    return (*requirements, _NUMPY_1) if _older(release, "2.4") else requirements, ()


def _pytorch(uri: str, tag: str) -> FrameworkImage | None:
    match = _DLC.match(tag)
    if match is None:
        return None
    requirements, notes = _torch_requirements(match["version"])
    notes += _python_note(match["py"]) + _gpu_note(match["processor"])
    title = f"SageMaker PyTorch {match['version']} ({match['processor']})"
    return FrameworkImage(uri, title, requirements, ("torch", "torchvision", "torchaudio"), notes)


def _tensorflow_requirements(version: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    minor = ".".join(version.split(".")[:2])
    pin, notes = _pin("tensorflow", minor, _TENSORFLOW)
    return ((pin, _NUMPY_1) if _older(minor, "2.18") else (pin,)), notes


def _tensorflow(uri: str, tag: str) -> FrameworkImage | None:
    match = _DLC.match(tag)
    if match is None:
        return None
    requirements, notes = _tensorflow_requirements(match["version"])
    notes += (
        "TensorFlow Serving is not run: the model needs code/inference.py with model_fn (a bare "
        "SavedModel is not served)",
        *_python_note(match["py"]),
        *_gpu_note(match["processor"]),
    )
    title = f"SageMaker TensorFlow {match['version']} ({match['processor']})"
    return FrameworkImage(uri, title, requirements, ("tensorflow",), notes)


def _huggingface(uri: str, tag: str, tensorflow: bool) -> FrameworkImage | None:
    match = _HUGGINGFACE.match(tag)
    if match is None:
        return None
    version, transformers = match["version"], match["transformers"]
    base, notes = _tensorflow_requirements(version) if tensorflow else _torch_requirements(version)
    if tensorflow:
        wheels: tuple[str, ...] = ("tensorflow",)
    else:  # the Hugging Face DLCs ship torch without torchaudio
        base, wheels = tuple(r for r in base if not r.startswith("torchaudio")), ("torch", "torchvision")
    exact = transformers.count(".") == 2
    pin = f"transformers=={transformers}" + ("" if exact else ".*")
    framework = "TensorFlow" if tensorflow else "PyTorch"
    notes += _python_note(match["py"]) + _gpu_note(match["processor"])
    title = (
        f"SageMaker Hugging Face {framework} {version} with transformers {transformers} "
        f"({match['processor']})"
    )
    return FrameworkImage(uri, title, (*base, pin), wheels, notes)
