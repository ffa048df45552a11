"""The notebook example, run the way a user runs it: `eval "$(moorage env)"`, then the unchanged SDK
code, in a process that can reach nothing but the server's port (tests/support/netjail.py). Any call
that would go to AWS (STS, S3, telemetry, the SDK's region look-ups) is refused and fails the test.

Two paths of the SDK: `Model(entry_point=..., source_dir=...)` repacks the code into model.tar.gz
(SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code); `FrameworkModel(..., code_location=...)` uploads
sourcedir.tar.gz beside it (SAGEMAKER_SUBMIT_DIRECTORY=s3://…/sourcedir.tar.gz).

Only the SDK's endpoint poll interval is shortened, from 30 s to 0.5 s (tests/support/sdk_poll.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT
from tests.support import sdk_poll
from tests.support.moorage_server import RunningServer, free_port, moorage_server
from tests.support.netjail import NetJail
from tests.support.pypi import needs_pypi

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notebook"
EXPECTED = ["item-0305", "item-0453", "item-0446"]  # user 114521's best three in the committed data
RUN = 'eval "$(moorage env --endpoint-url "$1" --state-dir "$2")" && exec python "$3" "$4"'
LAUNCHER = Path(sdk_poll.__file__)  # runs the script as `python SCRIPT` would, polling every 0.5 s

FRAMEWORK_DEPLOY = """
import json
import tarfile
import tempfile
from pathlib import Path

import boto3
import sagemaker
from sagemaker.model import FrameworkModel

session = sagemaker.Session(boto_session=boto3.Session())
bucket = session.default_bucket()
archive = Path(tempfile.mkdtemp()) / "model.tar.gz"
with tarfile.open(archive, "w:gz") as tar:  # the vectors only: the code travels as sourcedir.tar.gz
    for name in ("users.csv.gz", "items.csv.gz"):
        tar.add(Path("data") / name, arcname=name)
boto3.client("s3").upload_file(str(archive), bucket, "framework/model.tar.gz")

model = FrameworkModel(
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/recommender-serving:latest",
    model_data=f"s3://{bucket}/framework/model.tar.gz",
    role="arn:aws:iam::123456789012:role/SageMakerRole",
    entry_point="inference.py",
    source_dir="./code",
    code_location=f"s3://{bucket}/framework/code",
    predictor_cls=sagemaker.predictor.Predictor,
    sagemaker_session=session,
)
predictor = model.deploy(instance_type="ml.m5.xlarge", initial_instance_count=1, wait=True)
described = session.sagemaker_client.describe_model(ModelName=model.name)
print("submit directory:", described["PrimaryContainer"]["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"])
request = json.dumps({"user_id": "114521", "k": 3})
response = predictor.predict(request, initial_args={"ContentType": "application/json"})
for item in json.loads(response)["recommendations"]:
    print(f"114521: {item['item_id']} {item['score']:.4f}")
predictor.delete_endpoint()
model.delete_model()
print(f"deleted endpoint {predictor.endpoint_name} and model {model.name}")
"""


SKLEARN_DEPLOY = FRAMEWORK_DEPLOY.replace(
    "from sagemaker.model import FrameworkModel", "from sagemaker.sklearn import SKLearnModel"
).replace(
    """model = FrameworkModel(
    image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/recommender-serving:latest",""",
    """model = SKLearnModel(
    framework_version="1.2-1",
    py_version="py3",""",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), args=()) as running:  # S3 on the port too
        yield running


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def run_jailed(
    server: RunningServer, script: Path, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], NetJail]:
    """`eval "$(moorage env --endpoint-url URL --state-dir STATE)"; python SCRIPT` from the example's
    folder, with an environment of PATH, HOME and TMPDIR only (plus the jail), confined to the server's
    port. STATE is the server's, as for a user who runs both commands in one folder. SCRIPT runs through
    LAUNCHER, which only shortens the SDK's endpoint poll."""
    jail = NetJail(_port(server.url), tmp_path / "jail")
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(tmp)}
    result = subprocess.run(
        ["bash", "-c", RUN, "bash", server.url, str(server.state_dir), str(LAUNCHER), str(script)],
        cwd=EXAMPLE,
        env=jail.environ(base),
        capture_output=True,
        text=True,
        timeout=240,
    )
    return result, jail


def _report(result: subprocess.CompletedProcess[str], server: RunningServer) -> str:
    return (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
        f"\n--- server\n{server.output()[-4000:]}"
    )


def _assert_gone(sm: Any, endpoint: str, model: str) -> None:
    sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    with pytest.raises(ClientError):
        sm.describe_endpoint_config(EndpointConfigName=endpoint)
    with pytest.raises(ClientError):
        sm.describe_model(ModelName=model)


def _check_run(
    result: subprocess.CompletedProcess[str], jail: NetJail, server: RunningServer, script: Path
) -> tuple[str, str]:
    """The predictions and the clean-up line; returns the endpoint and model names."""
    assert result.returncode == 0, _report(result, server)
    assert jail.refusals() == [], _report(result, server)
    assert f"{LAUNCHER} {script}" in jail.armed(), jail.armed()  # the script ran jailed
    # the SDK's wait prints progress ("-----!") without a newline, so a line may start after it
    found = re.findall(r"114521: (item-\d{4}) (\d\.\d{4})$", result.stdout, flags=re.MULTILINE)
    assert [item for item, _ in found] == EXPECTED, _report(result, server)
    deleted = re.search(r"^deleted endpoint (\S+) and model (\S+)$", result.stdout, flags=re.MULTILINE)
    assert deleted is not None, _report(result, server)
    return deleted.group(1), deleted.group(2)


def test_jail_refuses_everything_but_the_port(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    jail = NetJail(port, tmp_path / "jail")
    probe = textwrap.dedent(f"""
        import socket
        for target in [("127.0.0.1", {other}), ("sts.amazonaws.com", 443)]:
            try:
                socket.create_connection(target, timeout=1)
            except PermissionError:
                print("refused", target[1])
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=1)
        except PermissionError:
            print("wrongly refused")
        except OSError:
            print("allowed")  # nothing listens there: the connection itself was let through
        a, b = socket.socketpair()
        a.sendall(b"x")
        print("unix", b.recv(1).decode())
    """)
    env = jail.environ({"PATH": "/usr/bin:/bin"})
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:4] == [f"refused {other}", "refused 443", "allowed", "unix x"], out.stderr
    assert len(jail.refusals()) == 2 and "sts.amazonaws.com" in jail.refusals()[1]
    assert jail.armed() == ["-c"]


def test_notebook_runs_unchanged(server: RunningServer, sm: Any, tmp_path: Path) -> None:
    script = EXAMPLE / "deploy.py"
    result, jail = run_jailed(server, script, tmp_path)
    endpoint, model = _check_run(result, jail, server, script)
    _assert_gone(sm, endpoint, model)


def test_framework_model_with_a_sourcedir_archive(server: RunningServer, sm: Any, tmp_path: Path) -> None:
    script = tmp_path / "framework_deploy.py"
    script.write_text(FRAMEWORK_DEPLOY)
    result, jail = run_jailed(server, script, tmp_path)
    endpoint, model = _check_run(result, jail, server, script)
    submit = re.search(r"submit directory: (\S+)$", result.stdout, flags=re.MULTILINE)
    assert submit is not None and re.fullmatch(r"s3://[^/]+/framework/code/.+/sourcedir\.tar\.gz", submit[1])
    _assert_gone(sm, endpoint, model)


@needs_pypi
def test_a_framework_class_resolves_its_own_image(server: RunningServer, sm: Any, tmp_path: Path) -> None:
    """SKLearnModel finds its ECR image itself; Moorage serves it with scikit-learn 1.2's pins."""
    script = tmp_path / "sklearn_deploy.py"
    script.write_text(SKLEARN_DEPLOY)
    assert "SKLearnModel(" in SKLEARN_DEPLOY and "image_uri" not in SKLEARN_DEPLOY
    result, jail = run_jailed(server, script, tmp_path)
    endpoint, model = _check_run(result, jail, server, script)
    log = (server.state_dir / "logs" / f"{endpoint}.log").read_text()
    assert "sagemaker-scikit-learn" in log and "scikit-learn==1.2.1" in log, log[-3000:]
    _assert_gone(sm, endpoint, model)
