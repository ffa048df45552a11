"""SAGEMAKER_SUBMIT_DIRECTORY=s3://…/sourcedir.tar.gz against a real server and a real S3-compatible
store (SeaweedFS): the code comes from that archive, not from the model's code/, and a missing archive
fails the endpoint with a reason that names the variable."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from tests.e2e.conftest import deploy, settled, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import moorage_server
from tests.support.seaweed import SeaweedS3

INFERENCE = """
import json
from greeting.words import shout

def model_fn(model_dir):
    with open(model_dir + "/weights.txt") as f:
        return f.read().strip()

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    return {"greeting": shout(model), "from": "sourcedir"}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def _sourcedir(path: Path) -> Path:
    files = {
        "inference.py": INFERENCE,
        "greeting/__init__.py": "",
        "greeting/words.py": "def shout(text):\n    return text.upper() + '!'\n",
        "requirements.txt": "# nothing beyond the server's own packages\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def test_code_from_an_s3_sourcedir(s3_server: SeaweedS3, tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    s3 = s3_server.client()
    bucket = s3_server.create_bucket("sourcedir")
    # the model's own code/ answers differently, so the test tells which code ran
    s3.upload_file(str(build_model_tar(tmp_path / "model.tar.gz")), bucket, "m/model.tar.gz")
    s3.upload_file(str(_sourcedir(tmp_path / "sourcedir.tar.gz")), bucket, "m/source/sourcedir.tar.gz")
    with moorage_server(tmp_path / "state", env=env) as server:
        sm, smr = server.client(), server.client("sagemaker-runtime")
        submit = f"s3://{bucket}/m/source/sourcedir.tar.gz"
        name = deploy(
            sm,
            f"s3://{bucket}/m/model.tar.gz",
            environment={"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": submit},
        )
        body: Any = smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")["Body"]
        assert json.loads(body.read()) == {"greeting": "HELLO!", "from": "sourcedir"}
        sm.delete_endpoint(EndpointName=name)

        missing = f"s3://{bucket}/m/nope/sourcedir.tar.gz"
        failed = deploy(
            sm,
            f"s3://{bucket}/m/model.tar.gz",
            name=unique("nosrc"),
            environment={"SAGEMAKER_SUBMIT_DIRECTORY": missing},
            wait=False,
        )
        described = settled(sm, failed)
        assert described["EndpointStatus"] == "Failed"
        reason = described["FailureReason"]
        assert f"SAGEMAKER_SUBMIT_DIRECTORY={missing} cannot be used as the model's code" in reason
        assert "NoSuchKey" in reason
