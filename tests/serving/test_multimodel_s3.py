"""A multi-model instance over an s3:// prefix (a real S3-compatible server, chosen with
MOORAGE_MME_S3_STORE): TargetModel appended to the prefix, and the missing-object message."""

from __future__ import annotations

import json
from pathlib import Path

from tests.serving.multimodel_support import StartMultiModel
from tests.support.models import build_model_tar
from tests.support.seaweed import SeaweedS3


def test_models_under_an_s3_prefix(
    start_multimodel: StartMultiModel, s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    archive = build_model_tar(tmp_path / "model.tar.gz", files={"weights.txt": "from s3"})
    s3_env.client().upload_file(str(archive), s3_bucket, "mme/a/model.tar.gz")
    mme = start_multimodel(
        MOORAGE_MME_SOURCE=f"s3://{s3_bucket}/mme/",
        MOORAGE_MME_S3_STORE=json.dumps([s3_env.endpoint_url, False]),
    )
    reply = mme.invoke("a/model.tar.gz")
    assert reply.status == 200, reply.body
    assert reply.json()["greeting"] == "from s3"
    assert mme.call("GET", "/models").json()["models"] == [
        {"modelName": "a/model.tar.gz", "modelUrl": f"s3://{s3_bucket}/mme/a/model.tar.gz"}
    ]
    missing = mme.invoke("b/model.tar.gz")
    assert missing.status == 404 and missing.headers["x-moorage-error"] == "ModelNotFound"
    assert missing.text.startswith(
        f"Failed to download model data (bucket: {s3_bucket}, key: mme/b/model.tar.gz)."
    )
