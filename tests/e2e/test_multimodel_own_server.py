"""A multi-model endpoint whose registered image runs its own multi-model server (`moorage image add
--command`): through the real server and unchanged boto3, the instance starts that one server in the
image's environment and loads, invokes and unloads each TargetModel through its model API."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FAST_WAIT, unique
from tests.e2e.test_multimodel import ROLE, invoke, metrics
from tests.serving.test_multimodel_own_server import MMS_SERVER
from tests.support.images import endpoint_log, image_add
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

URI = "123456789012.dkr.ecr.us-west-2.amazonaws.com/mms-server:1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state")) as running:
        yield running


def _mms_model(path: Path, text: str) -> None:
    """An archive the server loads: model.txt is its answer, size.txt the bytes its worker holds."""
    build_model_tar(path, files={"model.txt": text, "size.txt": "0"})


def _endpoint(sm: Any, source: str, journal: Path) -> str:
    name = unique("mms")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": URI,
            "Mode": "MultiModel",
            "ModelDataUrl": source,
            "Environment": {"MMS_JOURNAL": str(journal)},  # reaches the image's server
        },
    )
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
    sm.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[variant | {"InstanceType": "ml.m5.large"}]
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name


def test_an_image_with_its_own_multi_model_server_answers_per_target(
    server: RunningServer, tmp_path: Path
) -> None:
    script = tmp_path / "mms_server.py"
    script.write_text(MMS_SERVER)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    image_add(server, URI, "--python", python, "--command", f"python {script}")
    root = tmp_path / "models"
    _mms_model(root / "a.tar.gz", "alpha")
    _mms_model(root / "team" / "b.tar.gz", "beta")
    journal = tmp_path / "journal.jsonl"
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = _endpoint(sm, root.as_uri() + "/", journal)

    first = invoke(smr, endpoint, "a.tar.gz", {"x": 1})
    second = invoke(smr, endpoint, "team/b.tar.gz", {"x": 2})
    again = invoke(smr, endpoint, "a.tar.gz", {"x": 3})
    assert (first["model"], first["target"], first["echo"]) == ("alpha", "a.tar.gz", {"x": 1})
    assert (second["model"], second["target"], second["echo"]) == ("beta", "team/b.tar.gz", {"x": 2})
    assert (again["model"], again["echo"]) == ("alpha", {"x": 3})
    assert first["pid"] == second["pid"] == again["pid"]  # one server holds both models
    assert first["name"] != second["name"]

    calls = [json.loads(line) for line in journal.read_text().splitlines()]
    loads = [c for c in calls if (c["method"], c["path"]) == ("POST", "/models")]
    assert len(loads) == 2  # each model loaded once, then found loaded
    assert sorted(json.loads(c["body"])["model_name"] for c in loads) == sorted(
        [first["name"], second["name"]]
    )
    seen = metrics(server, endpoint)
    assert (seen["sagemaker_model_cache_lookups_total"], seen["sagemaker_model_cache_hits_total"]) == (3, 1)
    assert "runs its own multi-model server" in endpoint_log(server, endpoint)
    sm.delete_endpoint(EndpointName=endpoint)
