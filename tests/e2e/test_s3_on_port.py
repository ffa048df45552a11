"""S3 on the server's port (docs/s3.md), end to end: real `moorage serve` processes, real SeaweedFS,
unchanged boto3 and the `aws` CLI.

One server with the embedded store is shared by the module; the test that kills its store and then
restarts the whole server comes last, so the others see it as it started."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, free_port, moorage_server, stop_server
from tests.support.seaweed import SeaweedS3

ACCOUNT = "123456789012"
MIB = 1024 * 1024
STORE_BACK_SECONDS = 60.0


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`moorage serve` as it starts by default: S3 on the port, passed to the embedded store."""
    with moorage_server(tmp_path_factory.mktemp("state"), args=()) as running:
        yield running


@pytest.fixture(scope="module")
def s3_endpoint(embedded: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An endpoint whose model data was uploaded through the port into the embedded store."""
    archive = build_model_tar(tmp_path_factory.mktemp("models") / "model.tar.gz")
    s3 = _s3(embedded)
    bucket = unique("models")
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(archive), bucket, "echo/model.tar.gz")
    return deploy(embedded.client("sagemaker"), f"s3://{bucket}/echo/model.tar.gz")


def _s3(server: RunningServer) -> Any:
    """An S3 client on the server's port that never retries, so each answer is seen as it came."""
    return server.client("s3")


def _error(call: Any, **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    return dict(info.value.response)


def _invoke(server: RunningServer, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=json.dumps(body).encode()
    )
    result: dict[str, Any] = json.loads(answer["Body"].read())
    return result


def test_buckets_objects_multipart_owner_check_and_presigned_get(
    embedded: RunningServer, tmp_path: Path
) -> None:
    s3 = _s3(embedded)
    bucket = unique("port")
    s3.create_bucket(Bucket=bucket)

    key_id = f"arn:aws:kms:us-west-2:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    put = s3.put_object(
        Bucket=bucket, Key="small.txt", Body=b"hello", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id
    )
    assert put["ServerSideEncryption"] == "aws:kms"
    assert put["SSEKMSKeyId"] == key_id
    assert s3.get_object(Bucket=bucket, Key="small.txt")["Body"].read() == b"hello"
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    data = os.urandom(20 * MIB + 12345)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    parts = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.upload_file(str(source), bucket, "big.bin", Config=parts)
    head = s3.head_object(Bucket=bucket, Key="big.bin", ExpectedBucketOwner=ACCOUNT)
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-5")  # five parts: it really went up as a multipart upload
    target = tmp_path / "big.out"
    s3.download_file(bucket, "big.bin", str(target), Config=parts)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()

    refused = _error(s3.head_object, Bucket=bucket, Key="big.bin", ExpectedBucketOwner="111122223333")
    assert refused["ResponseMetadata"]["HTTPStatusCode"] == 403
    refused = _error(s3.get_object, Bucket=bucket, Key="small.txt", ExpectedBucketOwner="111122223333")
    assert refused["Error"]["Code"] == "AccessDenied"

    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "small.txt"}, ExpiresIn=300
    )
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == b"hello"


def test_an_endpoint_deploys_from_model_data_in_the_embedded_store(
    embedded: RunningServer, s3_endpoint: str
) -> None:
    described = embedded.client("sagemaker").describe_endpoint(EndpointName=s3_endpoint)
    assert described["EndpointStatus"] == "InService"
    assert _invoke(embedded, s3_endpoint, {"x": 1})["greeting"] == "hello"


# --- the aws CLI (awscli v1, from the dev extra) pointed at the port ---


def _aws_cli() -> str | None:
    """The `aws` next to this interpreter (the dev extra installs it there), else one on PATH, if it runs."""
    beside = Path(sys.executable).parent / "aws"
    found = str(beside) if beside.exists() else shutil.which("aws")
    if found is None:
        return None
    try:
        ran = subprocess.run([found, "--version"], capture_output=True, timeout=60, check=False)
    except OSError:
        return None
    return found if ran.returncode == 0 else None


def test_the_aws_cli_with_nothing_but_aws_endpoint_url(
    embedded: RunningServer, s3_endpoint: str, tmp_path: Path
) -> None:
    aws = _aws_cli()
    if aws is None:
        pytest.skip("the aws CLI (pip install awscli, in the dev extra) is not installed or does not run")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(
        {
            "AWS_ENDPOINT_URL": embedded.url,
            "AWS_ACCESS_KEY_ID": "placeholder",
            "AWS_SECRET_ACCESS_KEY": "placeholder",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull,  # nothing from this machine's own AWS configuration
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )

    def run(*args: str) -> str:
        ran = subprocess.run([aws, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert ran.returncode == 0, f"aws {' '.join(args)} exited {ran.returncode}:\n{ran.stderr}"
        return ran.stdout

    bucket = unique("cli")
    (tmp_path / "notes.txt").write_text("from the aws CLI\n")
    run("s3", "mb", f"s3://{bucket}")
    run("s3", "cp", "notes.txt", f"s3://{bucket}/dir/notes.txt")
    assert "notes.txt" in run("s3", "ls", f"s3://{bucket}/dir/")
    assert bucket in run("s3", "ls")
    assert run("s3", "cp", f"s3://{bucket}/dir/notes.txt", "-") == "from the aws CLI\n"

    names = [e["EndpointName"] for e in json.loads(run("sagemaker", "list-endpoints"))["Endpoints"]]
    assert s3_endpoint in names
    assert json.loads(run("sts", "get-caller-identity"))["Account"] == ACCOUNT
    (tmp_path / "request.json").write_text('{"from": "cli"}')
    run(
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        s3_endpoint,
        "--content-type",
        "application/json",
        "--body",
        "fileb://request.json",
        "answer.json",
    )
    answer = json.loads((tmp_path / "answer.json").read_text())
    assert answer["greeting"] == "hello" and answer["echo"] == {"from": "cli"}


# --- the embedded store dies; then the whole server restarts (last: it replaces the shared server) ---


def _weed_child(server: RunningServer) -> int:
    """The embedded store's process: the server's child running `weed` on the server's state dir."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if (
                parent == server.process.pid
                and Path(command[0].decode()).name == "weed"
                and str(server.state_dir).encode() in b" ".join(command)
            ):
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no weed process under the server {server.process.pid}")


def test_a_killed_store_is_restarted_and_data_survives_it_and_a_server_restart(
    embedded: RunningServer, s3_endpoint: str
) -> None:
    s3 = _s3(embedded)
    bucket = unique("kept")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="kept.txt", Body=b"still here")

    weed = _weed_child(embedded)
    os.kill(weed, signal.SIGKILL)
    started = time.monotonic()
    restarting: dict[str, Any] = {}
    while time.monotonic() - started < 10 and not restarting:
        answer = _error(s3.get_object, Bucket=bucket, Key="kept.txt")
        if "restarting" in answer["Error"].get("Message", ""):
            restarting = answer
    assert restarting, "no 503 that names the restart while the store was down"
    assert restarting["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert restarting["Error"]["Code"] == "ServiceUnavailable"
    assert "exited with code -9" in restarting["Error"]["Message"]

    while True:
        try:
            body = s3.get_object(Bucket=bucket, Key="kept.txt")["Body"].read()
            break
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ServiceUnavailable"
            assert time.monotonic() - started < STORE_BACK_SECONDS, "the store did not come back"
            time.sleep(0.2)
    assert body == b"still here"
    assert _weed_child(embedded) != weed
    log = embedded.output()
    assert "the embedded S3 store exited with code -9" in log
    assert "the embedded S3 store is back at" in log
    # the store's own output, under the name the 503s give for it
    shown = subprocess.run(
        [sys.executable, "-m", "moorage", "logs", "s3-store", "--state-dir", str(embedded.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and shown.stdout.count(" mini (S3 on ") >= 2, shown.stderr

    stop_server(embedded)
    with moorage_server(embedded.state_dir, args=()) as again:
        s3 = _s3(again)
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert s3.get_object(Bucket=bucket, Key="kept.txt")["Body"].read() == b"still here"
        # restored at start-up from its model data in the embedded store
        assert _invoke(again, s3_endpoint, {"after": "restart"})["greeting"] == "hello"


# --- servers of their own: an external store, and no S3 at all ---


def test_s3_endpoint_passes_to_an_external_store_and_the_server_downloads_from_it(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": s3_server.region,
    }
    args = ("--s3-endpoint", s3_server.endpoint_url)
    with moorage_server(tmp_path / "state", env=env, args=args) as server:
        s3 = _s3(server)  # signed with test/test, which the external store checks
        bucket = unique("external")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="note.txt", Body=b"through the port")
        s3.upload_file(str(build_model_tar(tmp_path / "model.tar.gz")), bucket, "model.tar.gz")

        direct = s3_server.client()
        assert direct.get_object(Bucket=bucket, Key="note.txt")["Body"].read() == b"through the port"
        assert "model.tar.gz" in [o["Key"] for o in direct.list_objects_v2(Bucket=bucket)["Contents"]]

        endpoint = deploy(server.client("sagemaker"), f"s3://{bucket}/model.tar.gz")
        assert _invoke(server, endpoint, {"x": 2})["greeting"] == "hello"


def test_an_unreachable_external_store_is_a_503_naming_no_log_that_is_not_there(tmp_path: Path) -> None:
    """Regression: the 503 told users to run `moorage logs s3`, which has no log to show (the
    embedded store's log is `s3-store`), and an external store has no log here at all."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    with moorage_server(tmp_path / "state", args=("--s3-endpoint", nowhere)) as server:
        answer = _error(_s3(server).get_object, Bucket="b", Key="k")
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
    message = answer["Error"]["Message"]
    assert "Cannot reach the S3 store" in message
    assert "moorage logs" not in message


def test_no_s3_answers_s3_with_how_to_turn_it_on_and_sagemaker_still_works(
    tmp_path: Path, echo_model: str
) -> None:
    with moorage_server(tmp_path / "state", args=("--no-s3",)) as server:
        answer = _error(_s3(server).list_buckets)
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 501
        assert answer["Error"]["Code"] == "NotImplemented"
        assert "--no-s3" in answer["Error"]["Message"] and "--s3-endpoint" in answer["Error"]["Message"]
        assert not (tmp_path / "state" / "s3").exists()

        assert server.client("sts").get_caller_identity()["Account"] == ACCOUNT
        endpoint = deploy(server.client("sagemaker"), echo_model)
        assert _invoke(server, endpoint, {"x": 3})["greeting"] == "hello"
