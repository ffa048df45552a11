"""Serverless cold start: the time from an InvokeEndpoint at zero instances to its answer, for the 5k
recommender (examples/recommender), and the ModelSetupTime the server reports for each of those starts.

Starts ``moorage serve`` with a short idle period (MOORAGE_SERVERLESS_IDLE_SECONDS), deploys the
recommender as a serverless endpoint, then ``--runs`` times: waits until the variant has scaled to zero
(GET /metrics ``sagemaker_variant_instances``), times one InvokeEndpoint (the cold start), then one more
(warm). Prints a table of medians (and min / max) and writes the numbers to bench/results.

Usage: python bench/serverless.py [--runs 10] [--movies 5000] [--memory 2048] [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "examples" / "recommender"), str(BENCH)]

import deploy  # noqa: E402  (examples/recommender/deploy.py)
import pack  # noqa: E402
import run  # noqa: E402  (bench/run.py: ports, clients)
from procinfo import Launched  # noqa: E402

from tests.support.metrics import endpoint_metric  # noqa: E402

BODY = json.dumps({"user_id": "u42", "k": 10})
IDLE_SECONDS = 0.3


def invoke_seconds(runtime: Any, name: str) -> float:
    started = time.perf_counter()
    response = runtime.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=BODY)
    response["Body"].read()
    return time.perf_counter() - started


def measure(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    archive = pack.build(movies=a.movies)
    port = run.free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MOORAGE_SERVERLESS_IDLE_SECONDS": str(IDLE_SECONDS),
        **dict(e.split("=", 1) for e in a.env),
    }
    cmd = [sys.executable, "-m", "moorage", "serve", "--port", str(port), "--state-dir", str(work / "state")]
    server = Launched.start("moorage", [*cmd, "--no-s3"], env, work / "moorage.log", run.REPO)
    try:
        sm, runtime = run.sagemaker_clients(port)
        run.wait_until("moorage serve", lambda: sm.list_endpoints() is not None, 60, 0.1)
        deploy.create_model(sm, "rec", archive.as_uri(), {})
        sm.create_endpoint_config(
            EndpointConfigName="rec",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "rec",
                    "ServerlessConfig": {"MemorySizeInMB": a.memory, "MaxConcurrency": a.concurrency},
                }
            ],
        )
        in_service = run.time_in_service(sm, "rec", "rec", timeout=600)["in_service_s"]
        cold, warm, setup = [], [], []
        for _ in range(a.runs):
            run.wait_until(
                "scale to zero",
                lambda: endpoint_metric(url, "sagemaker_variant_instances", "rec") == 0,
                60,
                0.05,
            )
            time.sleep(0.2)  # the stopped instance's exit settles
            before_sum = endpoint_metric(url, "sagemaker_model_setup_time_microseconds_sum", "rec")
            cold.append(invoke_seconds(runtime, "rec"))
            warm.append(invoke_seconds(runtime, "rec"))
            setup.append(
                (endpoint_metric(url, "sagemaker_model_setup_time_microseconds_sum", "rec") - before_sum)
                / 1e6
            )
    finally:
        server.stop(grace=30)
    return {"in_service_s": in_service, "cold_s": cold, "warm_s": warm, "model_setup_s": setup}


def render(result: dict[str, Any], a: argparse.Namespace) -> str:
    lines = [
        f"Serverless cold start, {a.movies // 1000}k recommender, MemorySizeInMB {a.memory}, "
        f"MaxConcurrency {a.concurrency}, {a.runs} runs ({' '.join(a.env) or 'default settings'})",
        "",
        "| measure | median | min | max |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (
        ("cold_s", "InvokeEndpoint at zero instances (cold start)"),
        ("model_setup_s", "ModelSetupTime (instance start to healthy)"),
        ("warm_s", "InvokeEndpoint right after (warm)"),
    ):
        values = result[key]
        lines.append(
            f"| {label} | {statistics.median(values) * 1000:.0f} ms | {min(values) * 1000:.0f} ms "
            f"| {max(values) * 1000:.0f} ms |"
        )
    lines.append(f"\nCreateEndpoint to InService: {result['in_service_s'] * 1000:.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--movies", type=int, default=5000)
    parser.add_argument("--memory", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    a = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moorage-serverless-") as tmp:
        result = measure(a, Path(tmp))
    print(render(result, a))
    out = BENCH / "results" / f"serverless-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(a), **result}, indent=2))
    print(f"\nwritten to {out.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
