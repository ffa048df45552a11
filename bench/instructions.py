"""Instructions the front door executes per request, counted by valgrind's callgrind: a measure that does
not move with the machine's load, for comparing two versions or settings of the hot path where wall-clock
runs on a shared 2-core VM vary by more than the difference being looked for.

Each side runs ``moorage serve`` under ``valgrind --tool=callgrind`` with instrumentation off, deploys
the 5k recommender (its instance runs normally, outside valgrind), sends a warm-up, switches
instrumentation on with ``callgrind_control``, sends ``--requests`` requests one at a time over one
keep-alive connection, and switches it off again. Instructions / requests = the front door's cost per
request (parsing, routing, forwarding, and whatever the side adds), identical from run to run.

Usage: python bench/instructions.py [--requests 2000] [--baseline-src DIR] [--sigv4]
  default: this checkout with metrics on and with metrics off
  --baseline-src DIR: also the code in DIR (an earlier commit's checkout), metrics as it had them
  --sigv4: also this checkout with SigV4 verification on (--credentials), every request signed
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "examples" / "recommender"), str(BENCH)]

import deploy  # noqa: E402  (examples/recommender/deploy.py)
import pack  # noqa: E402
import run  # noqa: E402  (bench/run.py: ports, clients, time_in_service)
from procinfo import Launched  # noqa: E402

MOVIES = 5000
BODY = json.dumps({"user_id": "u42", "k": 10})


@dataclass
class Side:
    label: str
    env: dict[str, str] = field(default_factory=dict)
    src: Path | None = None
    args: list[str] = field(default_factory=list)  # more `moorage serve` flags
    signed: bool = False  # sign each request (SigV4, the keys run.sagemaker_clients uses)


def measure(side: Side, archive: Path, requests: int, work: Path) -> dict[str, float]:
    port = run.free_port()
    out = work / f"callgrind-{side.label.replace(' ', '-')}.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "moorage",
        "serve",
        "--port",
        str(port),
        "--state-dir",
        str(work / f"state-{side.label.replace(' ', '-')}"),
        "--log-level",
        "warning",
        *side.args,
    ]
    # no health checks, metric history writes or alarm evaluations inside the measured window: only the
    # requests are counted (those run on timers, once a second or less, whatever the traffic)
    quiet = {
        "MOORAGE_HEALTH_INTERVAL_SECONDS": "3600",
        "MOORAGE_METRIC_RESOLUTION_SECONDS": "3600",
        "MOORAGE_ALARM_EVALUATION_SECONDS": "3600",
    }
    env = {**os.environ, "PYTHONMALLOC": "malloc", **quiet, **side.env}
    cwd = run.REPO
    if side.src is not None:
        env["PYTHONPATH"], cwd = str(side.src), side.src
    server = Launched.start("moorage", cmd, env, work / f"{side.label.replace(' ', '-')}.log", cwd)
    try:
        sm, _ = run.sagemaker_clients(port)
        run.wait_until("moorage serve under valgrind", lambda: sm.list_endpoints() is not None, 600, 0.5)
        deploy.create_model(sm, "m", archive.as_uri(), {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"})
        deploy.create_endpoint_config(sm, "m", "m")
        run.time_in_service(sm, "m", "m", timeout=600, poll=0.5)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        send(conn, 200, port if side.signed else None)  # warm-up: every code path has run once
        control(server.pid, "-i", "on")
        started = time.perf_counter()
        send(conn, requests, port if side.signed else None)
        seconds = time.perf_counter() - started
        control(server.pid, "-i", "off")
        control(server.pid, "-d")
        conn.close()
    finally:
        server.stop(grace=60)
    total = sum(_instructions(f) for f in work.glob(out.name + "*"))
    return {"instructions_per_request": total / requests, "seconds_under_valgrind": round(seconds, 1)}


def send(conn: http.client.HTTPConnection, count: int, signed_for: int | None = None) -> None:
    """`count` requests; with `signed_for` (the port), each signed as boto3 signs (signing is client-side,
    outside the count)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    for _ in range(count):
        if signed_for is not None:
            headers = run.signed_invocation(f"http://127.0.0.1:{signed_for}/endpoints/m/invocations", BODY)
        conn.request("POST", "/endpoints/m/invocations", body=BODY, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"request answered {response.status}")


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def _instructions(path: Path) -> int:
    """The `totals:` line of a callgrind dump: instructions executed since the previous dump."""
    text = path.read_text(errors="replace")
    match = re.search(r"^totals:\s+(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--baseline-src", type=Path, default=None)
    ap.add_argument("--sigv4", action="store_true", help="also a side with SigV4 verification on")
    a = ap.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("needs valgrind (Debian: apt install valgrind)")
    sides = [Side("metrics on"), Side("metrics off", env={"MOORAGE_METRICS": "0"})]
    if a.baseline_src is not None:
        sides.insert(0, Side("baseline", src=a.baseline_src))
    archive = pack.build(users=run.USERS, movies=MOVIES)
    work = Path(tempfile.mkdtemp(prefix="minstr-", dir="/tmp"))
    if a.sigv4:
        keys = work / "credentials"
        keys.write_text(run.BENCH_KEYS_FILE)
        sides.append(Side("sigv4 on", args=["--credentials", str(keys)], signed=True))
    results = {}
    try:
        for side in sides:
            results[side.label] = measure(side, archive, a.requests, work)
            run.log(
                f"{side.label}: {results[side.label]['instructions_per_request']:,.0f} instructions/request"
            )
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    print(f"## Front-door instructions per request (callgrind, {a.requests} requests, 5k model)\n")
    print("| side | instructions / request | vs first |")
    print("|---|---|---|")
    first = next(iter(results.values()))["instructions_per_request"]
    for label, r in results.items():
        ipr = r["instructions_per_request"]
        print(f"| {label} | {ipr:,.0f} | {ipr / first:.3f} |")
    out = run.RESULTS / f"instructions-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
