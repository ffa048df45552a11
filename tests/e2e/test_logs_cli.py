"""`moorage logs ENDPOINT` shows what the instances printed and the server's events for that endpoint."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.conftest import deploy, model_dir_tar
from tests.support.moorage_server import RunningServer

PRINTING = """
import json

def model_fn(model_dir):
    print("loading weights from", model_dir, flush=True)
    return 1

def transform_fn(model, body, content_type, accept):
    raise ZeroDivisionError("no luck today")
"""


def test_logs_command(sm: Any, smr: Any, server: RunningServer, tmp_path: Path) -> None:
    name = deploy(sm, model_dir_tar(tmp_path, "printing", inference=PRINTING))
    with contextlib.suppress(smr.exceptions.ModelError):
        smr.invoke_endpoint(EndpointName=name, Body=json.dumps({}), ContentType="application/json")
    result = subprocess.run(
        [sys.executable, "-m", "moorage", "logs", name, "--state-dir", str(server.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "loading weights from" in result.stdout
    assert "ZeroDivisionError: no luck today" in result.stdout
    assert "InService" in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "moorage", "logs", "nobody", "--state-dir", str(server.state_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 1
