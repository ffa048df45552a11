"""`moorage env`: the exports, the shell round trip, and the SDK config that keeps the SDK off AWS STS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from moorage.api.sts import StsApi
from moorage.env_command import DEFAULT_ACCOUNT, build_environment
from tests.auth.wire import _Raw
from tests.support.moorage_server import free_port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("AWS_", "SAGEMAKER_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def sts_server() -> Iterator[str]:
    """A tiny HTTP server that answers STS as Moorage does, for account 111122223333."""
    api = StsApi("111122223333", "us-east-1")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower().encode(): v.encode() for k, v in self.headers.items()}
            response = api(b"POST", self.path.encode(), headers, body, None)
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type.decode())
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.usefixtures("clean_env")
def test_nothing_configured_and_no_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = build_environment(url, tmp_path / "state")
    assert env.exports["AWS_ENDPOINT_URL"] == url
    assert env.exports["AWS_DEFAULT_REGION"] == env.exports["AWS_REGION"] == "us-east-1"
    assert env.exports["AWS_ACCESS_KEY_ID"] and env.exports["AWS_SECRET_ACCESS_KEY"]
    assert not any(name.startswith("AWS_ENDPOINT_URL_") for name in env.exports)
    config = Path(env.exports["SAGEMAKER_USER_CONFIG_OVERRIDE"])
    assert config.is_absolute() and config.parent == (tmp_path / "state").resolve()
    assert f"sagemaker-us-east-1-{DEFAULT_ACCOUNT}" in config.read_text()
    assert any("could not ask" in note for note in env.notes)


@pytest.mark.usefixtures("clean_env")
def test_account_from_the_server_and_configuration_kept(
    tmp_path: Path, sts_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDMINE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mine")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", sts_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://elsewhere:9000")
    env = build_environment(None, tmp_path)
    assert env.exports["AWS_ENDPOINT_URL"] == sts_server
    assert "AWS_ACCESS_KEY_ID" not in env.exports and "AWS_DEFAULT_REGION" not in env.exports
    assert env.unsets == ["AWS_ENDPOINT_URL_S3"]
    assert len(env.notes) == 1 and "AWS_ENDPOINT_URL_S3" in env.notes[0]
    text = Path(env.exports["SAGEMAKER_USER_CONFIG_OVERRIDE"]).read_text()
    assert "sagemaker-eu-west-1-111122223333" in text
    assert "unset AWS_ENDPOINT_URL_S3\n" in env.script()


@pytest.mark.usefixtures("clean_env")
def test_eval_in_a_shell_and_the_sdk_reads_the_config(
    tmp_path: Path, sts_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    odd_state = tmp_path / "state dir; $(touch pwned) 'x'"
    script = (
        'eval "$("$PY" -m moorage env --endpoint-url "$URL" --state-dir "$STATE")" && printf "%s\\n" '
        '"$AWS_ENDPOINT_URL" "$AWS_REGION" "$AWS_ACCESS_KEY_ID" "$SAGEMAKER_USER_CONFIG_OVERRIDE"'
    )
    result = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "PY": sys.executable, "URL": sts_server, "STATE": str(odd_state)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    url, region, key, config = result.stdout.splitlines()
    assert (url, region, key) == (sts_server, "us-east-1", "moorage")
    assert Path(config).parent == odd_state.resolve()
    assert not (tmp_path / "pwned").exists()

    from sagemaker.config.config import load_sagemaker_config

    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", config)
    modules = load_sagemaker_config()["SageMaker"]["PythonSDK"]["Modules"]
    assert modules["Session"]["DefaultS3Bucket"] == "sagemaker-us-east-1-111122223333"
    assert modules["TelemetryOptOut"] is True


@pytest.mark.usefixtures("clean_env")
def test_default_bucket_makes_no_sts_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the config, Session.default_bucket() asks only S3 (answered here in-process), never STS."""
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import boto3
    from botocore.awsrequest import AWSResponse
    from sagemaker.session import Session

    env = build_environment(f"http://127.0.0.1:{free_port()}", tmp_path)
    for name, value in env.exports.items():
        monkeypatch.setenv(name, value)
    calls: list[str] = []

    def send(request: Any, **_: Any) -> AWSResponse:
        calls.append(f"{request.method} {request.url}")
        body = b""
        if request.method == "GET" and "sts" not in request.url:
            body = b"<ListAllMyBucketsResult><Buckets></Buckets></ListAllMyBucketsResult>"
        status = 404 if request.method == "HEAD" else 200
        return AWSResponse(request.url, status, {"Content-Length": str(len(body))}, _Raw(body))

    boto_session = boto3.Session()
    boto_session.events.register_first("before-send", send)
    session: Any = Session(boto_session=boto_session)
    assert session.default_bucket() == f"sagemaker-us-east-1-{DEFAULT_ACCOUNT}"
    assert calls, "S3 was never asked"
    assert all(call.split()[1].startswith(env.exports["AWS_ENDPOINT_URL"]) for call in calls), calls
    assert not any("sts" in call for call in calls), calls
