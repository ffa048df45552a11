"""Batch transform end to end: a real `moorage serve` with its embedded S3 store, unchanged boto3 clients,
real model instances. Each feature once; the split/strategy/assemble/join/filter matrix is covered by
the record handling's own tests."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from moorage.jobs.transform.parameters import ExecutionParameters, batch_environment, resolve
from tests.e2e.conftest import FAST_WAIT, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server, stop_server

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"

# CSV rows of numbers -> their sum; a cell "bad" fails the request; a cell "slow" sleeps 0.3 s.
# JSON Lines {"features": [...]} -> {"score": sum}. text/x-meta rows -> what the request looked like.
TRANSFORM_INFERENCE = """
import json, os, time

def model_fn(model_dir):
    return {}

def input_fn(body, content_type):
    text = body.decode() if isinstance(body, (bytes, bytearray)) else body
    lines = [line for line in text.split("\\n") if line.strip()]
    if content_type in ("text/csv", "text/x-meta"):
        return content_type, [line.split(",") for line in lines]
    if content_type in ("application/json", "application/jsonlines"):
        return "json", [json.loads(line) for line in lines]
    raise ValueError("unsupported content type " + str(content_type))

def _score(cells):
    if "bad" in cells:
        raise ValueError("cannot score a row with 'bad' in it")
    if "slow" in cells:
        time.sleep(0.3)
    return sum(float(c) for c in cells if c not in ("slow",))

def predict_fn(data, model):
    kind, rows = data
    if kind == "text/x-meta":
        env = os.environ
        if any("slow" in row for row in rows):
            time.sleep(0.3)
        return [
            f"{len(rows)},{env.get('SAGEMAKER_BATCH')},{env.get('SAGEMAKER_BATCH_STRATEGY', '-')},"
            f"{env.get('SAGEMAKER_MAX_CONCURRENT_TRANSFORMS', '-')},"
            f"{env.get('SAGEMAKER_MAX_PAYLOAD_IN_MB', '-')},{env.get('JOB_FLAVOUR', '-')},{os.getpid()}"
            for _ in rows
        ]
    if kind == "json":
        return [json.dumps({"score": _score([str(x) for x in row["features"]])}) for row in rows]
    return [f"{_score(row):g}" for row in rows]

def output_fn(prediction, accept):
    return "\\n".join(prediction), accept or "text/csv"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), args=()) as running:
        yield running


@pytest.fixture(scope="module")
def sm(server: RunningServer) -> Any:
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def s3(server: RunningServer) -> Any:
    return server.client("s3")


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = unique("transform")
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def model(sm: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_model(sm, tmp_path_factory.mktemp("model"), workers=2)


def make_model(sm: Any, root: Path, workers: int) -> str:
    archive = build_model_tar(root / "model.tar.gz", inference=TRANSFORM_INFERENCE)
    name = unique("scorer")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "example/image:latest",
            "ModelDataUrl": archive.as_uri(),
            "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)},
        },
    )
    return name


def put(s3: Any, bucket: str, key: str, body: bytes | str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def get(s3: Any, bucket: str, key: str) -> str:
    return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode())


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return sorted(item["Key"] for item in found)


def create_job(
    sm: Any,
    model: str,
    source: str,
    output: str,
    *,
    content_type: str = "text/csv",
    accept: str | None = "text/csv",
    split: str = "Line",
    data_type: str = "S3Prefix",
    name: str | None = None,
    instances: int = 1,
    **extra: Any,
) -> str:
    name = name or unique("job")
    transform_output: dict[str, Any] = {"S3OutputPath": output, "AssembleWith": "Line"}
    if accept is not None:
        transform_output["Accept"] = accept
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": source}},
            "ContentType": content_type,
            "SplitType": split,
            **extra.pop("transform_input", {}),
        },
        TransformOutput={**transform_output, **extra.pop("transform_output", {})},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": instances},
        **extra,
    )
    return name


def area_job(sm: Any, model: str, bucket: str, area: str, **kwargs: Any) -> str:
    """`create_job` reading every object under s3://<bucket>/<area>/in/, writing to <area>/out."""
    return create_job(sm, model, f"s3://{bucket}/{area}/in/", f"s3://{bucket}/{area}/out", **kwargs)


def wait(sm: Any, name: str) -> dict[str, Any]:
    """The waiter a SageMaker user calls, then the job as described."""
    with contextlib.suppress(WaiterError):  # Failed: the caller looks at the description
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName=name, WaiterConfig=FAST_WAIT
        )
    described: dict[str, Any] = sm.describe_transform_job(TransformJobName=name)
    return described


def completed(sm: Any, name: str) -> dict[str, Any]:
    """`wait`, then the description of a job that must have completed (else it is the failure's message)."""
    described = wait(sm, name)
    assert described["TransformJobStatus"] == "Completed", described
    return described


def test_csv_multi_record_job(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "csv/in/a.csv", "1,2\n3,4\n5,6\n")
    put(s3, bucket, "csv/in/sub/b.csv", "10,20\n30,40")
    name = area_job(
        sm,
        model,
        bucket,
        "csv",
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    described = completed(sm, name)
    assert described["TransformJobArn"].endswith(f":transform-job/{name.lower()}")
    assert described["BatchStrategy"] == "MultiRecord" and described["MaxPayloadInMB"] == 1
    assert described["TransformInput"]["SplitType"] == "Line"
    assert described["TransformStartTime"] <= described["TransformEndTime"]
    assert keys(s3, bucket, "csv/out") == ["csv/out/a.csv.out", "csv/out/sub/b.csv.out"]
    assert get(s3, bucket, "csv/out/a.csv.out") == "3\n7\n11\n"
    assert get(s3, bucket, "csv/out/sub/b.csv.out") == "30\n70\n"
    tags = sm.list_tags(ResourceArn=described["TransformJobArn"])["Tags"]
    assert tags == [{"Key": "team", "Value": "ml"}]


def test_progress_in_describe_transform_job(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "progress/in/a.csv", "1\n2\n3\n4\n")
    name = area_job(sm, model, bucket, "progress")
    completed(sm, name)
    raw = sm.describe_transform_job(TransformJobName=name)
    # boto3 drops members its model does not name; the raw answer carries the progress
    progress = _raw(sm, "DescribeTransformJob", {"TransformJobName": name})["MoorageProgress"]
    assert progress == {"RecordsDone": 4, "RecordsTotal": 4, "ObjectsDone": 1, "ObjectsTotal": 1}
    assert raw["TransformJobStatus"] == "Completed"


def _raw(client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """The JSON body the server sent, as the `moorage jobs` command reads it."""
    captured: dict[str, Any] = {}

    def keep(http_response: Any, **_: Any) -> None:
        captured.update(json.loads(http_response.content))

    event = f"after-call.sagemaker.{operation}"
    client.meta.events.register(event, lambda http_response, **kw: keep(http_response))
    try:
        getattr(client, _snake(operation))(**params)
    finally:
        client.meta.events.unregister(event)
    return captured


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def test_single_record_strategy_and_batch_environment(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "meta/in/rows.txt", "a\nb\nc\n")
    single = create_job(
        sm,
        model,
        f"s3://{bucket}/meta/in/",
        f"s3://{bucket}/meta/single",
        content_type="text/x-meta",
        accept="text/csv",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=1,
        Environment={"JOB_FLAVOUR": "tangy"},
    )
    multi = create_job(
        sm, model, f"s3://{bucket}/meta/in/", f"s3://{bucket}/meta/multi", content_type="text/x-meta"
    )
    completed(sm, single)
    completed(sm, multi)
    rows = [line.split(",") for line in get(s3, bucket, "meta/single/rows.txt.out").splitlines()]
    # one record per request; the variables for what the job set, the job's Environment
    assert [row[:6] for row in rows] == [["1", "true", "SINGLE_RECORD", "1", "-", "tangy"]] * 3
    # MaxConcurrentTransforms 1 beats the container's answer (2 workers): one request at a time, and
    # least-outstanding picks the same worker each time
    assert len({row[6] for row in rows}) == 1
    rows = [line.split(",") for line in get(s3, bucket, "meta/multi/rows.txt.out").splitlines()]
    # nothing set: the container's MULTI_RECORD applies, and no SAGEMAKER_* variable but SAGEMAKER_BATCH
    assert [row[:6] for row in rows] == [["3", "true", "-", "-", "-", "-"]] * 3


def test_container_execution_parameters_apply_when_the_job_sets_none(
    sm: Any, s3: Any, bucket: str, model: str
) -> None:
    put(s3, bucket, "params/in/rows.txt", "slow\n" * 6)
    name = area_job(
        sm,
        model,
        bucket,
        "params",
        content_type="text/x-meta",
        BatchStrategy="SingleRecord",
    )
    completed(sm, name)
    rows = [line.split(",") for line in get(s3, bucket, "params/out/rows.txt.out").splitlines()]
    # the container answers MaxConcurrentTransforms 2 (its workers): two requests at a time, on both
    assert len(rows) == 6 and len({row[6] for row in rows}) == 2
    assert {row[3] for row in rows} == {"-"}  # and it is not told a value the job did not set


def test_execution_parameters_precedence() -> None:
    container = {"MaxConcurrentTransforms": 4, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 20}
    assert resolve({}, {}) == ExecutionParameters(1, 6, "MultiRecord")
    assert resolve({}, container) == ExecutionParameters(4, 20, "SingleRecord")
    job = {"MaxConcurrentTransforms": 2, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 5}
    assert resolve(job, container) == ExecutionParameters(2, 5, "MultiRecord")
    assert resolve({}, {"MaxPayloadInMB": 1000, "BatchStrategy": "ALL"}) == ExecutionParameters(
        1, 6, "MultiRecord"
    )
    assert batch_environment({}) == {"SAGEMAKER_BATCH": "true"}
    assert batch_environment(job)["SAGEMAKER_BATCH_STRATEGY"] == "MULTI_RECORD"


def test_manifest_of_gzip_objects(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "gz/data/one.csv.gz", gzip.compress(b"1,1\n2,2\n"))
    put(s3, bucket, "gz/data/two.csv.gz", gzip.compress(b"5,5\n"))
    put(s3, bucket, "gz/data/ignored.csv.gz", gzip.compress(b"9,9\n"))
    manifest = [{"prefix": f"s3://{bucket}/gz/data/"}, "two.csv.gz", "one.csv.gz"]
    put(s3, bucket, "gz/input.manifest", json.dumps(manifest))
    name = create_job(
        sm,
        model,
        f"s3://{bucket}/gz/input.manifest",
        f"s3://{bucket}/gz/out/",
        data_type="ManifestFile",
        transform_input={"CompressionType": "Gzip"},
    )
    completed(sm, name)
    assert keys(s3, bucket, "gz/out/") == ["gz/out/one.csv.gz.out", "gz/out/two.csv.gz.out"]
    assert get(s3, bucket, "gz/out/one.csv.gz.out") == "2\n4\n"
    assert get(s3, bucket, "gz/out/two.csv.gz.out") == "10\n"


def test_join_source_with_filters(sm: Any, s3: Any, bucket: str, model: str) -> None:
    rows = [{"id": "r1", "features": [1, 2]}, {"id": "r2", "features": [3, 4]}]
    put(s3, bucket, "join/in/rows.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    name = area_job(
        sm,
        model,
        bucket,
        "join",
        content_type="application/jsonlines",
        accept="application/jsonlines",
        DataProcessing={
            "InputFilter": "$",
            "JoinSource": "Input",
            "OutputFilter": "$['id','SageMakerOutput']",
        },
    )
    completed(sm, name)
    lines = [json.loads(line) for line in get(s3, bucket, "join/out/rows.jsonl.out").splitlines()]
    assert lines == [
        {"id": "r1", "SageMakerOutput": {"score": 3.0}},
        {"id": "r2", "SageMakerOutput": {"score": 7.0}},
    ]


def test_csv_input_filter_and_join(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "csvjoin/in/rows.csv", "id1,1,2\nid2,3,4\n")
    name = area_job(
        sm,
        model,
        bucket,
        "csvjoin",
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )
    completed(sm, name)
    assert get(s3, bucket, "csvjoin/out/rows.csv.out") == "id1,3\nid2,7\n"


def test_a_failing_record_fails_the_job_and_other_objects_keep_output(
    sm: Any, s3: Any, bucket: str, model: str
) -> None:
    put(s3, bucket, "fail/in/1.csv", "1,1\n")
    put(s3, bucket, "fail/in/2.csv", "2,2\n3,3\nbad,4\n5,5\n")
    put(s3, bucket, "fail/in/3.csv", "4,4\n")
    name = area_job(
        sm,
        model,
        bucket,
        "fail",
        BatchStrategy="SingleRecord",
        ModelClientConfig={"InvocationsMaxRetries": 0, "InvocationsTimeoutInSeconds": 30},
    )
    described = wait(sm, name)
    assert described["TransformJobStatus"] == "Failed"
    reason = described["FailureReason"]
    assert f"s3://{bucket}/fail/in/2.csv" in reason and "record 3" in reason, reason
    assert "cannot score" in reason, reason
    assert keys(s3, bucket, "fail/out") == ["fail/out/1.csv.out", "fail/out/3.csv.out"]
    assert get(s3, bucket, "fail/out/3.csv.out") == "8\n"
    summary = sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"][0]
    assert summary["TransformJobStatus"] == "Failed" and summary["FailureReason"] == reason


def test_file_locations(sm: Any, model: str, tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "x.csv").write_text("1,2\n")
    name = create_job(sm, model, source.as_uri() + "/", (tmp_path / "out").as_uri())
    completed(sm, name)
    assert (tmp_path / "out" / "x.csv.out").read_text() == "3\n"
    # as in S3, the name is what follows the prefix's last `/`: without one, the folder's name too
    name = create_job(sm, model, source.as_uri(), (tmp_path / "out2").as_uri())
    completed(sm, name)
    assert (tmp_path / "out2" / "in" / "x.csv.out").read_text() == "3\n"


def test_stop_mid_run(server: RunningServer, sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "stop/in/a-quick.csv", "1,1\n")
    put(s3, bucket, "stop/in/slow.csv", "slow,1\n" * 200)
    name = area_job(sm, model, bucket, "stop", BatchStrategy="SingleRecord")
    _until(sm, name, "ObjectsDone", 1)  # the quick object's output is written: the stop removes it
    _until_records_done(sm, name, 2)
    sm.stop_transform_job(TransformJobName=name)
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in ("Stopping", "Stopped")
    described = wait(sm, name)
    assert described["TransformJobStatus"] == "Stopped" and "FailureReason" not in described
    assert keys(s3, bucket, "stop/out") == []  # no partial output
    log = (server.state_dir / "logs" / f"transform-job.{name}.log").read_text()
    assert "Instances stopped." in log and "Stopped (StopTransformJob)." in log
    sm.stop_transform_job(TransformJobName=name)  # stopping a stopped job changes nothing


def _until_records_done(sm: Any, name: str, records: int = 1) -> None:
    _until(sm, name, "RecordsDone", records)


def _until(sm: Any, name: str, member: str, count: int, timeout: float = 120) -> None:
    """Until the job's progress `member` reaches `count` while it runs; a job that ended first fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = _raw(sm, "DescribeTransformJob", {"TransformJobName": name})
        if raw["MoorageProgress"][member] >= count:
            return
        if raw["TransformJobStatus"] != "InProgress":
            raise AssertionError(f"job {name} ended before {member} reached {count}: {raw}")
        time.sleep(0.1)
    raise AssertionError(f"job {name} did not reach {member} {count} in {timeout} s")


def test_names_are_reserved_and_requests_checked(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "names/in/a.csv", "1\n")
    name = area_job(sm, model, bucket, "names")
    arn = sm.describe_transform_job(TransformJobName=name)["TransformJobArn"]
    with pytest.raises(ClientError) as info:
        area_job(sm, model, bucket, "names", name=name)
    assert info.value.response["Error"]["Code"] == "ResourceInUse"
    assert info.value.response["Error"]["Message"] == (
        "Job name must be unique within an AWS account and region, and a job with this name already "
        f"exists ({arn})"
    )
    wait(sm, name)
    with pytest.raises(ClientError) as info:  # still taken once the job is over
        area_job(sm, model, bucket, "names", name=name)
    assert info.value.response["Error"]["Code"] == "ResourceInUse"

    def refused(job_model: str = model, **changes: Any) -> dict[str, str]:
        """The error CreateTransformJob answers for a job of `job_model` reading names/in/, with `changes`."""
        with pytest.raises(ClientError) as info:
            create_job(sm, job_model, f"s3://{bucket}/names/in/", f"s3://{bucket}/o", **changes)
        error: dict[str, str] = info.value.response["Error"]
        return error

    error = refused("no-such-model")
    assert error["Code"] == "ValidationException"
    assert 'Could not find model "arn:aws:sagemaker:us-west-2:' in error["Message"]
    assert "it can be at most 100" in refused(MaxConcurrentTransforms=20, MaxPayloadInMB=6)["Message"]
    assert refused(Environment={f"K{i}": "v" for i in range(17)})["Code"] == "ValidationException"
    error = refused(DataProcessing={"JoinSource": "Input"}, transform_output={"AssembleWith": "None"})
    assert "AssembleWith" in error["Message"]
    error = refused(instances=1000)
    assert error["Code"] == "ResourceLimitExceeded"
    assert "TransformResources.InstanceCount" in error["Message"]
    with pytest.raises(ClientError) as info:
        sm.describe_transform_job(TransformJobName="never-created")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(WaiterError):  # the waiter gives up on a job that does not exist
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName="never-created", WaiterConfig=FAST_WAIT
        )


def test_list_transform_jobs_pages(sm: Any, s3: Any, bucket: str, model: str) -> None:
    put(s3, bucket, "list/in/a.csv", "1\n")
    stem = unique("listed")
    names = [
        create_job(sm, model, f"s3://{bucket}/list/in/", f"s3://{bucket}/list/out{i}", name=f"{stem}-{i}")
        for i in range(5)
    ]
    for name in names:
        wait(sm, name)
    paginator = sm.get_paginator("list_transform_jobs")
    pages = list(paginator.paginate(NameContains=stem, SortBy="Name", SortOrder="Ascending", MaxResults=2))
    assert [len(page["TransformJobSummaries"]) for page in pages] == [2, 2, 1]
    listed = [s["TransformJobName"] for page in pages for s in page["TransformJobSummaries"]]
    assert listed == names
    completed = sm.list_transform_jobs(NameContains=stem, StatusEquals="Completed", MaxResults=100)
    assert len(completed["TransformJobSummaries"]) == 5
    assert sm.list_transform_jobs(NameContains=stem, StatusEquals="Stopped")["TransformJobSummaries"] == []
    newest = sm.list_transform_jobs(NameContains=stem, SortBy="CreationTime")["TransformJobSummaries"][0]
    assert newest["TransformJobName"] == names[-1]


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_restart_mid_run_resumes(tmp_path: Path, how: str) -> None:
    state = tmp_path / "state"
    with moorage_server(state, args=()) as first:
        sm, s3 = first.client("sagemaker"), first.client("s3")
        model = make_model(sm, tmp_path / "model", workers=1)
        bucket = unique("restart")
        s3.create_bucket(Bucket=bucket)
        for i in range(6):
            put(s3, bucket, f"in/{i}.csv", "slow,1\n" * 4)
        name = create_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", BatchStrategy="SingleRecord")
        _until_objects_done(sm, name, 1)
        if how == "kill-9":
            first.process.kill()
            first.process.wait()
            _until_gone(state / "s3")
        else:
            stop_server(first)
    with moorage_server(state, args=()) as second:
        sm, s3 = second.client("sagemaker"), second.client("s3")
        described = wait(sm, name)
        assert described["TransformJobStatus"] == "Completed", described
        assert len(keys(s3, bucket, "out/")) == 6
        assert all(get(s3, bucket, f"out/{i}.csv.out") == "1\n" * 4 for i in range(6))
        log = (state / "logs" / f"transform-job.{name}.log").read_text()
        assert "Resuming after a server restart" in log
        resumed = log[log.index("Resuming after a server restart") :]
        # the objects finished before the restart are not transformed again
        done = int(re.search(r"; (\d+) input object\(s\) were done", resumed).group(1))  # type: ignore[union-attr]
        transformed = int(re.search(r"Transformed (\d+) input object", resumed).group(1))  # type: ignore[union-attr]
        assert done >= 1 and transformed == 6 - done, resumed


def test_a_job_that_cannot_resume_fails_with_the_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with moorage_server(state, args=()) as first:
        sm, s3 = first.client("sagemaker"), first.client("s3")
        model = make_model(sm, tmp_path / "model", workers=1)
        bucket = unique("noresume")
        s3.create_bucket(Bucket=bucket)
        put(s3, bucket, "in/slow.csv", "slow,1\n" * 100)
        name = create_job(sm, model, f"s3://{bucket}/in/", f"s3://{bucket}/out", BatchStrategy="SingleRecord")
        _until_records_done(sm, name)
        first.process.kill()
        first.process.wait()
        _until_gone(state / "s3")
    (tmp_path / "model" / "model.tar.gz").unlink()  # the model data is gone
    shutil.rmtree(state / "cache", ignore_errors=True)
    with moorage_server(state, args=()) as second:
        described = wait(second.client("sagemaker"), name)
        assert described["TransformJobStatus"] == "Failed"
        reason = described["FailureReason"]
        assert reason.startswith("The job was interrupted by a server restart and could not be resumed"), (
            reason
        )
        assert "model.tar.gz" in reason, reason


def _until_gone(data_dir: Path, timeout: float = 30) -> None:
    """Until the killed server's embedded S3 store (which its parent's death stops) has let go of its
    data directory: a store started on it meanwhile cannot open it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holders = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(data_dir).encode() in cmdline.read_bytes():
                    holders.append(cmdline)
        if not holders:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes still use {data_dir}")


def _until_objects_done(sm: Any, name: str, objects: int) -> None:
    _until(sm, name, "ObjectsDone", objects)


def test_moorage_jobs_shows_progress(
    server: RunningServer, sm: Any, s3: Any, bucket: str, model: str
) -> None:
    put(s3, bucket, "cli/in/slow.csv", "slow,1\n" * 12)
    stem = unique("cli")
    name = area_job(
        sm,
        model,
        bucket,
        "cli",
        name=f"{stem}-job",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=1,
    )
    watched = subprocess.run(
        [sys.executable, "-m", "moorage", "jobs", "--watch", "--name-contains", stem],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AWS_ENDPOINT_URL": server.url},
    )
    assert watched.returncode == 0, watched.stderr
    tables = watched.stdout.strip().split("\n\n")
    assert len(tables) > 1  # redrawn while the job ran
    header, row = tables[0].splitlines()
    assert header.split() == ["JOB", "STATUS", "RECORDS", "OBJECTS", "PROGRESS"]
    assert row.split()[:2] == [name, "InProgress"]
    header, row = tables[-1].splitlines()
    assert row.split() == [name, "Completed", "12/12", "1/1", "[####################]", "100%"]
