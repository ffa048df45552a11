"""Endpoints that cannot start go Failed with a FailureReason the user can act on."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import WaiterError

from tests.e2e.conftest import FAST_WAIT, deploy, model_dir_tar

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


def test_missing_artifact(sm: Any, tmp_path: Path) -> None:
    name = deploy(sm, (tmp_path / "nowhere" / "model.tar.gz").as_uri(), wait=False)
    reason = _wait_failed(sm, name)
    assert "nowhere" in reason


def test_not_an_archive(sm: Any, tmp_path: Path) -> None:
    path = tmp_path / "junk" / "model.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"this is not a tarball")
    name = deploy(sm, path.as_uri(), wait=False)
    assert "tar" in _wait_failed(sm, name).lower()
