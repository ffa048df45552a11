"""Asynchronous inference: how many InvokeEndpointAsync requests per second the server accepts (each one
committed to the state store before its 202), and the end-to-end latency of one request at low load
(from the call to its output object on disk).

Starts ``moorage serve`` (SQLite state store, no S3: inputs inline, outputs under file://), deploys the
echo model as two asynchronous endpoints:

- ``accept``: scaled to 0 instances (UpdateEndpointWeightsAndCapacities), so nothing is taken from the
  queue while wrk sends InvokeEndpointAsync (inline body) at each concurrency for ``--seconds``. Every
  202 wrk counts must be a row in the store afterwards: the script checks it.
- ``latency``: one instance; ``--requests`` requests one after another, each timed from the call to the
  moment its output file exists (polled every 0.5 ms).

Usage: python bench/async.py [--seconds 10] [--concurrency 16 64] [--requests 100]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import run  # noqa: E402  (bench/run.py: ports, clients, server start)

from tests.support.models import build_model_tar  # noqa: E402

LUA = """
local body = '{"n": 1}'
local headers = {["X-Amzn-SageMaker-Content-Type"] = "application/json"}
function request()
  return wrk.format("POST", nil, headers, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\\n',
    summary.requests, seconds, summary.requests / seconds, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def deploy_async(sm: Any, model: str, name: str, out: Path) -> None:
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
        PrimaryContainer={"Image": "example/image", "ModelDataUrl": model, "Environment": {}},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": out.as_uri()}},
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 600}
    )


def rows(db: Path, endpoint: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM async_requests WHERE endpoint_name = ?", (endpoint,)
            ).fetchone()[0]
        )


def accepted(port: int, endpoint: str, concurrency: int, seconds: float, lua: Path) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/endpoints/{endpoint}/async-invocations"
    threads = min(2, concurrency)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(seconds))}s",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def latency(smr: Any, endpoint: str, requests: int) -> list[float]:
    times = []
    for n in range(requests):
        started = time.perf_counter()
        answer = smr.invoke_endpoint_async(
            EndpointName=endpoint, Body=json.dumps({"n": n}).encode(), ContentType="application/json"
        )
        path = Path(answer["OutputLocation"].removeprefix("file://"))
        while not path.exists():
            time.sleep(0.0005)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--requests", type=int, default=100)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moorage-async-bench-") as tmp:
        work = Path(tmp)
        model = build_model_tar(work / "m" / "model.tar.gz").as_uri()
        port = run.free_port()
        server = run.start_moorage(work, port, None)
        try:
            sm, smr = run.sagemaker_clients(port)
            run.wait_until("moorage serve", lambda: sm.list_endpoints() is not None, 60, 0.1)
            deploy_async(sm, model, "accept", work / "out-accept")
            deploy_async(sm, model, "latency", work / "out-latency")
            sm.update_endpoint_weights_and_capacities(
                EndpointName="accept",
                DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 0}],
            )
            sm.get_waiter("endpoint_in_service").wait(
                EndpointName="accept", WaiterConfig={"Delay": 0.2, "MaxAttempts": 600}
            )
            lua = work / "async.lua"
            lua.write_text(LUA)
            db = work / "state" / "moorage.db"
            results = []
            for concurrency in a.concurrency:
                before = rows(db, "accept")
                result = accepted(port, "accept", concurrency, a.seconds, lua)
                ok = result["requests"] - result["err_status"]
                committed = rows(db, "accept") - before
                assert committed >= ok, f"{ok} requests answered 202 but only {committed} rows were committed"
                results.append((concurrency, result, ok, committed))
            times = latency(smr, "latency", a.requests)
        finally:
            server.stop()
    print("| concurrency | accepted/s | p50 ms | p99 ms | 202s | rows committed | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency, result, ok, committed in results:
        errors = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
        print(
            f"| {concurrency} | {ok / result['duration_s']:,.0f} | {result['p50_us'] / 1000:.2f} | "
            f"{result['p99_us'] / 1000:.2f} | {ok} | {committed} | {errors} |"
        )
    ms = sorted(t * 1000 for t in times)
    print()
    print(f"End-to-end latency at low load ({len(ms)} requests one at a time, call → output file):")
    p90 = ms[int(0.9 * (len(ms) - 1))]
    print(f"median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms")


if __name__ == "__main__":
    main()
