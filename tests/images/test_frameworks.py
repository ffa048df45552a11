"""Framework image URIs as the SageMaker SDK itself produces them, in several regions and accounts."""

from __future__ import annotations

import os
import warnings

import pytest

from moorage.images.frameworks import parse_framework_image

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sagemaker import image_uris

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1"]


def _retrieve(framework: str, region: str, version: str, **kwargs: str) -> str:
    return str(image_uris.retrieve(framework, region, version, image_scope="inference", **kwargs))


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(
    ("version", "pin"), [("1.2-1", "scikit-learn==1.2.1"), ("1.0-1", "scikit-learn==1.0.2")]
)
def test_sklearn(region: str, version: str, pin: str) -> None:
    image = parse_framework_image(_retrieve("sklearn", region, version))
    assert image is not None
    assert image.requirements == (pin, "numpy<2")
    assert image.title == f"SageMaker scikit-learn {version}"


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize(
    ("version", "pins"),
    [("1.7-1", ("xgboost==1.7.4", "numpy<2")), ("1.5-1", ("xgboost==1.5.2", "numpy<2")),
     ("3.0-5", ("xgboost==3.0.5",)), ("0.90-2", ("xgboost==0.90", "numpy<2"))],
)  # fmt: skip
def test_xgboost(region: str, version: str, pins: tuple[str, ...]) -> None:
    image = parse_framework_image(_retrieve("xgboost", region, version))
    assert image is not None and image.requirements == pins


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-northeast-1"])
@pytest.mark.parametrize("instance", ["ml.m5.large", "ml.g5.xlarge"])
@pytest.mark.parametrize(
    ("version", "py", "torch"),
    [("2.1", "py310", "2.1.0"), ("1.13", "py39", "1.13.1"), ("2.6", "py312", "2.6.0")],
)
def test_pytorch(region: str, instance: str, version: str, py: str, torch: str) -> None:
    uri = _retrieve("pytorch", region, version, py_version=py, instance_type=instance)
    image = parse_framework_image(uri)
    assert image is not None, uri
    assert image.requirements[0] == f"torch=={torch}"
    assert ("numpy<2" in image.requirements) == (torch < "2.4")
    assert ("gpu" in image.title) == instance.startswith("ml.g")


@pytest.mark.parametrize(
    "tag",
    ["2.1.0-cpu-py310-ubuntu20.04-sagemaker", "2.1.0-gpu-py310-cu118-ubuntu20.04-sagemaker", "2.1-cpu-py310"],
)
def test_pytorch_full_tags(tag: str) -> None:
    image = parse_framework_image(f"763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-inference:{tag}")
    assert image is not None
    assert image.requirements == ("torch==2.1.0", "torchvision==0.16.0", "torchaudio==2.1.0", "numpy<2")
    assert any("Python 3.10" in note for note in image.notes)


@pytest.mark.parametrize("region", ["us-east-1", "sa-east-1"])
@pytest.mark.parametrize(("version", "pin"), [("2.13", "tensorflow==2.13.1"), ("2.19", "tensorflow==2.19.0")])
def test_tensorflow(region: str, version: str, pin: str) -> None:
    image = parse_framework_image(_retrieve("tensorflow", region, version, instance_type="ml.m5.large"))
    assert image is not None and image.requirements[0] == pin
    assert any("TensorFlow Serving is not run" in note for note in image.notes)


def test_huggingface() -> None:
    uri = _retrieve(
        "huggingface", "us-east-1", "4.37", base_framework_version="pytorch2.1", py_version="py310",
        instance_type="ml.m5.large",
    )  # fmt: skip
    image = parse_framework_image(uri)
    assert image is not None
    assert image.requirements == ("torch==2.1.0", "torchvision==0.16.0", "numpy<2", "transformers==4.37.*")
    full = parse_framework_image(
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
        "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04"
    )
    assert full is not None and full.requirements[-1] == "transformers==4.37.0"


def test_unlisted_version_is_pinned_by_prefix() -> None:
    image = parse_framework_image(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.9-1-cpu-py3"
    )
    assert image is not None and image.requirements == ("scikit-learn==1.9.*",)
    assert "not in the image table" in image.notes[0]


@pytest.mark.parametrize(
    "uri",
    [
        "example/image:latest",
        "python:3.11",
        "433757028032.dkr.ecr.us-west-2.amazonaws.com/xgboost:1",  # the built-in algorithm, another contract
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1-cpu-py310",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference",  # no tag: no version
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-own:1.0",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:latest",
        "",
    ],
)
def test_unknown(uri: str) -> None:
    assert parse_framework_image(uri) is None
