"""wrk as the load generator: find or install it, run it with ``post.lua``, parse what it prints.

wrk is a C program with an HdrHistogram and costs a fraction of a core at these rates, so on a
small box it takes little CPU from the servers it measures (a Python client would take far more).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "post.lua"
INSTALL_HINT = "install wrk first: sudo apt-get install -y wrk   (or build it from https://github.com/wg/wrk)"


def ensure_wrk() -> str:
    """Path of ``wrk``; installs the Debian/Ubuntu package when running as root, else exits with a hint."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk not found; installing it with apt-get", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # apt's chatter goes to stderr: stdout is the results table
        for args in (["update", "-qq"], ["install", "-y", "-qq", "wrk"]):
            subprocess.run(["apt-get", *args], env=env, stdout=sys.stderr, timeout=300, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(f"wrk is required. {INSTALL_HINT}")


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The JSON line printed by ``post.lua``'s ``done()``, plus wrk's own non-2xx count."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith('{"requests"')]
    if not lines:
        raise ValueError(f"no result line in wrk output: {stdout[-800:]!r}")
    result: dict[str, Any] = json.loads(lines[-1])
    m = _NON_2XX.search(stdout)
    result["non_2xx"] = int(m.group(1)) if m else 0
    result["errors"] = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_timeout")) + max(
        result["err_status"], result["non_2xx"]
    )
    return result


def threads_for(concurrency: int) -> int:
    """One wrk thread up to c=8 keeps wrk's CPU small; two above it keep it from being the bottleneck."""
    return 1 if concurrency <= 8 else 2


def run_wrk(
    wrk: str,
    url: str,
    concurrency: int,
    duration: float,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 10,
) -> dict[str, Any]:
    """One closed-loop wrk run against ``url`` (bounded: killed after duration + 60 s)."""
    cmd = [
        wrk,
        f"-t{threads_for(concurrency)}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        f"{timeout_s:g}s",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr[-800:]}")
    result = parse_wrk_output(out.stdout)
    result["cmd"] = " ".join(cmd)
    return result
