"""Endpoints that cannot start go Failed with a FailureReason the user can act on."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.e2e.conftest import FAST_WAIT, deploy, model_dir_tar, unique

FAILING_MODEL_FN = """
def model_fn(model_dir):
    raise KeyError("weights-missing")
"""


def _wait_failed(sm: Any, name: str) -> str:
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "Failed"
    return str(described["FailureReason"])


def test_model_fn_exception(sm: Any, tmp_path: Path) -> None:
    name = deploy(sm, model_dir_tar(tmp_path, "bad", inference=FAILING_MODEL_FN), wait=False)
    reason = _wait_failed(sm, name)
    assert "model_fn" in reason and "weights-missing" in reason
    with pytest.raises(sm.exceptions.ClientError) as error:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=name)
    assert "Cannot update" in str(error.value)
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        code = b"def model_fn(d):\n    return 1\n"
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(code)
        tar.addfile(info, io.BytesIO(code))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path.as_uri()


def test_path_traversal_archive_is_refused(sm: Any, tmp_path: Path) -> None:
    url = _tar_with(tmp_path / "evil" / "model.tar.gz", tarfile.TarInfo("../../escaped.txt"), b"x")
    name = deploy(sm, url, wait=False)
    reason = _wait_failed(sm, name)
    assert "escaped.txt" in reason
    assert not (tmp_path / "escaped.txt").exists()


def test_symlink_out_is_refused(sm: Any, tmp_path: Path) -> None:
    link = tarfile.TarInfo("weights")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    name = deploy(sm, _tar_with(tmp_path / "link" / "model.tar.gz", link), wait=False)
    assert "weights" in _wait_failed(sm, name)


def test_missing_artifact_is_refused_by_create_model(sm: Any, tmp_path: Path) -> None:
    url = (tmp_path / "nowhere" / "model.tar.gz").as_uri()
    with pytest.raises(ClientError) as raised:
        deploy(sm, url, wait=False)
    error = raised.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "ValidationException",
        f"Could not find model data at {url}.",
    )


def test_artifact_removed_after_create_model_fails_the_endpoint(
    sm: Any, tmp_path: Path, echo_model: str
) -> None:
    path = tmp_path / "gone" / "model.tar.gz"
    path.parent.mkdir()
    shutil.copyfile(echo_model.removeprefix("file://"), path)
    name = unique("gone")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": path.as_uri()},
    )
    path.unlink()
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    reason = _wait_failed(sm, name)
    assert str(path) in reason and "does not exist" in reason


def test_not_an_archive(sm: Any, tmp_path: Path) -> None:
    path = tmp_path / "junk" / "model.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"this is not a tarball")
    name = deploy(sm, path.as_uri(), wait=False)
    assert "tar" in _wait_failed(sm, name).lower()


def _config_with(sm: Any, echo_model: str, **extra: Any) -> str:
    """A model and an endpoint config (with `extra`) of the same new name."""
    name = unique("cfg")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": echo_model},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        **extra,
    )
    return name


def test_explainer_config_fails_instead_of_serving_without_explanations(sm: Any, echo_model: str) -> None:
    explainer = {"ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {"ShapBaseline": "1,2"}}}}
    config = _config_with(sm, echo_model, ExplainerConfig=explainer)
    sm.create_endpoint(EndpointName=config, EndpointConfigName=config)
    reason = _wait_failed(sm, config)
    assert "ExplainerConfig" in reason and "not supported" in reason
