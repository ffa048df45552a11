"""`moorage ls | describe | invoke`: real `python -m moorage` processes against a real server, via boto3.

Every run gets an environment without AWS settings, as on a fresh machine: the commands must supply
their own placeholder region and credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from moorage.client_commands import endpoint_rows, format_table
from tests.e2e.conftest import deploy
from tests.support.moorage_server import RunningServer, free_port, moorage_server


def moorage(
    *args: str, url: str | None = None, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    clean |= {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **(env or {})}
    command = [sys.executable, "-m", "moorage", *args, *(["--endpoint-url", url] if url else [])]
    result = subprocess.run(command, input=stdin, capture_output=True, env=clean, timeout=60)
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


@pytest.fixture(scope="module")
def endpoint(sm: Any, echo_model: str) -> str:
    return deploy(sm, echo_model)


def test_ls_on_a_fresh_server_says_there_are_none(tmp_path: Path) -> None:
    with moorage_server(tmp_path / "state") as fresh:
        # No --endpoint-url: AWS_ENDPOINT_URL is where boto3 users already put it.
        result = moorage("ls", env={"AWS_ENDPOINT_URL": fresh.url})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"No endpoints on {fresh.url}."


def test_ls_shows_each_variant(server: RunningServer, endpoint: str) -> None:
    result = moorage("ls", url=server.url)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ENDPOINT", "STATUS", "VARIANT", "INSTANCES", "WEIGHT"]
    assert [endpoint, "InService", "AllTraffic", "1", "1"] in [row.split() for row in rows]


def test_ls_table_shows_desired_values_that_differ() -> None:
    now = datetime.now(UTC)
    updating = {
        "EndpointName": "scaling",
        "EndpointStatus": "Updating",
        "ProductionVariants": [
            {
                "VariantName": "A",
                "CurrentInstanceCount": 1,
                "DesiredInstanceCount": 3,
                "CurrentWeight": 1.0,
                "DesiredWeight": 0.5,
                "VariantStatus": [{"Status": "Updating", "StartTime": now}],
            }
        ],
    }
    creating = {
        "EndpointName": "new",
        "EndpointStatus": "Creating",
        "PendingDeploymentSummary": {
            "EndpointConfigName": "new",
            "StartTime": now,
            "ProductionVariants": [{"VariantName": "B", "DesiredInstanceCount": 2, "DesiredWeight": 1.0}],
        },
    }
    lines = format_table(endpoint_rows([updating, creating])).splitlines()
    assert lines[0].split() == ["ENDPOINT", "STATUS", "VARIANT", "INSTANCES", "WEIGHT", "VARIANT", "STATUS"]
    assert lines[1].split() == ["scaling", "Updating", "A", "1→3", "1→0.5", "Updating"]
    assert lines[2].split() == ["new", "Creating", "B", "0→2", "1"]


def test_describe(server: RunningServer, sm: Any, endpoint: str) -> None:
    result = moorage("describe", endpoint, url=server.url)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    arn = sm.describe_endpoint(EndpointName=endpoint)["EndpointArn"]
    assert text.startswith(f"Endpoint {endpoint}\n")
    for label, value in [
        ("Status", "InService"),
        ("ARN", arn),
        ("Config", endpoint),
        ("Instance type", "ml.m5.large"),
        ("Image", "example/image:latest"),
        ("Instances", "1"),
        ("Weight", "1"),
    ]:
        assert any(
            line.split(None, label.count(" ") + 1) == [*label.split(), value] for line in text.splitlines()
        )
    assert "Variant AllTraffic" in text


def test_describe_json_is_the_raw_response(server: RunningServer, sm: Any, endpoint: str) -> None:
    result = moorage("describe", endpoint, "--json", url=server.url)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    expected = sm.describe_endpoint(EndpointName=endpoint)
    assert printed["EndpointName"] == endpoint
    assert printed["EndpointStatus"] == "InService"
    assert printed["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert datetime.fromisoformat(printed["CreationTime"]) == expected["CreationTime"]
    assert "ResponseMetadata" not in printed
    # where each instance runs: a member of Moorage's own, which botocore's model does not name
    assert "MoorageInstances" not in expected
    [placed] = printed["MoorageInstances"]
    assert placed["VariantName"] == "AllTraffic" and placed["InstanceId"].startswith("i-")
    assert placed["Placement"] == "this machine"


def test_describe_missing_endpoint(server: RunningServer) -> None:
    result = moorage("describe", "nobody-here", url=server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("Error (ValidationException): ")
    assert "Traceback" not in result.stderr


def test_invoke_with_a_json_body(server: RunningServer, endpoint: str) -> None:
    result = moorage(
        "invoke", endpoint, "--body", '{"n": 1}', "--content-type", "application/json", url=server.url
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"n": 1}
    assert "variant AllTraffic" in result.stderr


def test_invoke_with_a_body_from_a_file(server: RunningServer, endpoint: str, tmp_path: Path) -> None:
    body = tmp_path / "request.json"
    body.write_text('{"from": "file"}')
    result = moorage(
        "invoke", endpoint, "--body", f"@{body}", "--content-type", "application/json", url=server.url
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"from": "file"}


def test_invoke_with_a_body_from_stdin(server: RunningServer, endpoint: str) -> None:
    result = moorage(
        "invoke",
        endpoint,
        "--body",
        "@-",
        "--content-type",
        "application/json",
        "--target-variant",
        "AllTraffic",
        url=server.url,
        stdin=b'{"from": "stdin"}',
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["echo"] == {"from": "stdin"}


def test_invoke_missing_endpoint(server: RunningServer) -> None:
    result = moorage("invoke", "nobody-here", "--body", "{}", url=server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("Error (ValidationError): Endpoint nobody-here of account")
    assert "not found" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_invoke_when_the_model_fails(server: RunningServer, endpoint: str) -> None:
    result = moorage(
        "invoke", endpoint, "--body", '{"crash": "x"}', "--content-type", "application/json", url=server.url
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error (ModelError): ")
    assert "  OriginalStatusCode: 500" in lines
    assert "  OriginalMessage: boom: x" in lines
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [["ls"], ["describe", "some-endpoint"], ["invoke", "some-endpoint", "--body", "{}"]]
)
def test_nothing_listening(command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = moorage(*command, url=url)
    assert result.returncode != 0
    assert result.stderr.strip() == f"No Moorage server answers at {url}; start one with `moorage serve`."
