"""Batch transform on the Ray provider (`moorage serve --compute ray`): the job's instances are Ray actors
on the session's two-node cluster, its data in the server's embedded S3 store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import unique
from tests.e2e.test_transform import create_job, get, keys, make_model, put, wait
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.ray_cluster import HEAD_IP, SECOND_IP, RayCluster

_HEALTHY = re.compile(r"instance (i-[0-9a-f]+) is healthy on (.*?) \(\d+ workers\)")


@pytest.fixture(scope="module")
def ray_server(ray_nodes: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = ray_nodes.server_env(MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS="10")
    args = tuple(arg for arg in ray_nodes.server_args() if arg != "--no-s3")  # S3 on the port
    with moorage_server(tmp_path_factory.mktemp("state"), env=env, args=args) as running:
        yield running


def test_transform_job_on_ray(ray_server: RunningServer, tmp_path: Path) -> None:
    sm: Any = ray_server.client("sagemaker")
    s3: Any = ray_server.client("s3")
    bucket = unique("ray-transform")
    s3.create_bucket(Bucket=bucket)
    for i in range(4):
        put(s3, bucket, f"in/{i}.csv", f"{i},1\n{i},2\n")
    model = make_model(sm, tmp_path, workers=1)
    name = create_job(
        sm,
        model,
        f"s3://{bucket}/in/",
        f"s3://{bucket}/out",
        BatchStrategy="MultiRecord",
        instances=2,
    )
    described = wait(sm, name)
    assert described["TransformJobStatus"] == "Completed", described
    assert keys(s3, bucket, "out/") == [f"out/{i}.csv.out" for i in range(4)]
    assert get(s3, bucket, "out/3.csv.out") == "4\n5\n"
    log = (ray_server.state_dir / "logs" / f"transform-job.{name}.log").read_text()
    places = [where for _, where in _HEALTHY.findall(log)]
    assert len(places) == 2, log
    assert all(where.startswith((f"Ray node {HEAD_IP} ", f"Ray node {SECOND_IP} ")) for where in places)
    assert "Instances stopped." in log
