"""Moorage against Moorage: two set-ups of the same 5k recommender, in one run, on one box.

Each scenario starts two servers (sides A and B; sigv4 three) that differ in one thing, deploys the
example on each with plain boto3 and runs wrk against both, alternating the order per concurrency (the
quiet gate and retries of ``bench/run.py`` apply), so both see the same machine. Scenarios:

- ``same``: two identical servers (an A/A run: the spread this box gives two equal sides).
- ``hotpath``: the code in ``--baseline-src`` (a checkout of an earlier commit) against this one.
- ``metrics``: MOORAGE_METRICS=0 against the default (metrics on).
- ``sigv4``: the code in ``--baseline-src`` (no signatures checked), this checkout, and this checkout
  with ``--credentials`` and every request SigV4-signed (three sides; wrk replays one signed request).
- ``variants``: one variant against two variants with weights 50/50 (the router's cost); the same
  number of workers in total (two workers on one instance, or one worker on each variant's instance).
- ``instances``: one instance with two workers against two instances with one worker each.
- ``scaleout``: not a load comparison; under light steady traffic, the time from an
  UpdateEndpointWeightsAndCapacities call (1 -> 2 instances) to the new instance's first answer
  (read from /metrics), over ``--repeats`` scale-outs.

Usage: python bench/compare.py SCENARIO [--baseline-src DIR] [--conc 1,8,32] [--duration 15] [--rounds 5]
       [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "examples" / "recommender"), str(BENCH)]

import deploy  # noqa: E402  (examples/recommender/deploy.py)
import pack  # noqa: E402
import run  # noqa: E402  (bench/run.py: servers, wrk runs behind the quiet gate, roles)
from loadgen import ensure_wrk, run_wrk  # noqa: E402
from procinfo import Launched, wait_quiet  # noqa: E402

MOVIES = 5000


@dataclass
class Side:
    """One server and the endpoint it serves."""

    label: str
    env: dict[str, str] = field(default_factory=dict)
    src: Path | None = None  # another checkout's moorage (PYTHONPATH), else this one
    variants: list[tuple[float, int, int]] = field(
        default_factory=lambda: [(1.0, 1, 2)]
    )  # weight, n, workers
    signed: bool = False  # --credentials, and every request signed


def scenario_sides(name: str, baseline: Path | None) -> tuple[Side, ...]:
    if name == "hotpath":
        if baseline is None:
            raise SystemExit("hotpath needs --baseline-src DIR (e.g. a git worktree of the earlier commit)")
        return Side("before", src=baseline), Side("after")
    if name == "same":  # an A/A run: how far two identical servers differ on this box
        return Side("first"), Side("second")
    if name == "sigv4":
        if baseline is None:
            raise SystemExit("sigv4 needs --baseline-src DIR (the previous release's checkout)")
        return (Side("previous", src=baseline), Side("this"), Side("this + SigV4", signed=True))
    if name == "metrics":
        return Side("metrics off", env={"MOORAGE_METRICS": "0"}), Side("metrics on")
    if name == "variants":
        return Side("1 variant"), Side("2 variants 50/50", variants=[(1.0, 1, 1), (1.0, 1, 1)])
    if name == "instances":
        return Side("1 instance x2 workers"), Side("2 instances x1 worker", variants=[(1.0, 2, 1)])
    raise SystemExit(f"unknown scenario {name!r}")


def _signed_request(url: str) -> dict[str, str]:
    """post.lua's settings for one request signed as boto3 signs InvokeEndpoint (keys bench/bench)."""
    body = json.dumps({"user_id": "u42", "k": 10})
    headers = run.signed_invocation(url, body)
    return {"SIGNED_BODY": body, "AUTHORIZATION": headers["Authorization"], "AMZ_DATE": headers["X-Amz-Date"]}


def start(side: Side, work: Path, stack: list[Launched]) -> tuple[Launched, Any, Any, int]:
    port = run.free_port()
    state = work / f"state-{len(stack)}"
    cmd = [sys.executable, "-m", "moorage", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--state-dir", str(state)]
    if side.signed:
        keys = work / "credentials"
        keys.write_text(run.BENCH_KEYS_FILE)
        cmd += ["--credentials", str(keys)]
    env = {**os.environ, **side.env}
    cwd = run.REPO
    if side.src is not None:
        env["PYTHONPATH"] = str(side.src)
        cwd = side.src
    server = Launched.start("moorage", cmd, env, work / f"moorage-{len(stack)}.log", cwd)
    stack.append(server)
    sm, runtime = run.sagemaker_clients(port)
    run.wait_until("moorage serve", lambda: server.alive() and sm.list_endpoints() is not None, 60, 0.1)
    return server, sm, runtime, port


def deploy_side(side: Side, sm: Any, archive: Path, omp: str) -> str:
    name = "bench"
    variants = []
    for i, (weight, count, workers) in enumerate(side.variants):
        model = f"{name}-m{i}"
        env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "OMP_NUM_THREADS": omp}
        deploy.create_model(sm, model, archive.as_uri(), env)
        variants.append(
            {
                "VariantName": f"v{i}",
                "ModelName": model,
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": count,
                "InitialVariantWeight": weight,
            }
        )
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants)
    run.time_in_service(sm, name, name)
    return name


def compare(a: argparse.Namespace) -> dict[str, Any]:
    wrk = ensure_wrk()
    archive = pack.build(users=run.USERS, movies=MOVIES)
    sides = scenario_sides(a.scenario, a.baseline_src)
    work = Path(tempfile.mkdtemp(prefix="mcmp-", dir="/tmp"))
    stack: list[Launched] = []
    results: dict[str, Any] = {"scenario": a.scenario, "sides": [s.label for s in sides], "load": []}
    try:
        targets = []
        for side in sides:
            server, sm, _, port = start(side, work, stack)
            endpoint = deploy_side(side, sm, archive, a.omp_threads)
            run.settle(server, 30)
            url = f"http://127.0.0.1:{port}/endpoints/{endpoint}/invocations"
            targets.append(run.Target(side.label, server, url, _signed_request(url) if side.signed else {}))
        for t in targets:
            run_wrk(wrk, t.url, 8, a.warmup, env={"N_USERS": str(run.USERS), **t.wrk_env})
        for round_ in range(a.rounds):
            for i, conc in enumerate(a.conc):
                for t in targets if (i + round_) % 2 == 0 else targets[::-1]:
                    r = run.measured_run(wrk, t, stack, conc, a.duration, a.attempts, a.quiet_wait)
                    r["round"] = round_
                    results["load"].append(r)
    finally:
        for tree in reversed(stack):
            tree.stop()
    return results


def scaleout(a: argparse.Namespace) -> dict[str, Any]:
    """Seconds from UpdateEndpointWeightsAndCapacities(1 -> 2) to the new instance's first answer."""
    archive = pack.build(users=run.USERS, movies=MOVIES)
    work = Path(tempfile.mkdtemp(prefix="mcmp-", dir="/tmp"))
    stack: list[Launched] = []
    timings: list[dict[str, float]] = []
    try:
        server, sm, _, port = start(Side("scale-out"), work, stack)
        name = deploy_side(Side("scale-out", variants=[(1.0, 1, 1)]), sm, archive, a.omp_threads)
        stop = threading.Event()
        traffic = threading.Thread(target=_light_traffic, args=(port, name, stop), daemon=True)
        traffic.start()
        for _ in range(a.repeats):
            wait_quiet(0.3, a.quiet_wait, [server.pid])
            before = set(_serving_instances(port, name))
            t0 = time.perf_counter()
            sm.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[{"VariantName": "v0", "DesiredInstanceCount": 2}],
            )
            accepted = time.perf_counter() - t0
            while not set(_serving_instances(port, name)) - before:
                time.sleep(0.01)
            first_answer = time.perf_counter() - t0
            while sm.describe_endpoint(EndpointName=name)["EndpointStatus"] != "InService":
                time.sleep(0.01)
            in_service = time.perf_counter() - t0
            timings.append(
                {
                    "accepted_s": round(accepted, 4),
                    "first_answer_s": round(first_answer, 3),
                    "in_service_s": round(in_service, 3),
                }
            )
            run.log(f"  scale-out: first answer from the new instance after {first_answer:.3f} s")
            sm.update_endpoint_weights_and_capacities(
                EndpointName=name,
                DesiredWeightsAndCapacities=[{"VariantName": "v0", "DesiredInstanceCount": 1}],
            )
            while sm.describe_endpoint(EndpointName=name)["EndpointStatus"] != "InService":
                time.sleep(0.05)
        stop.set()
    finally:
        for tree in reversed(stack):
            tree.stop()
    return {"scenario": "scaleout", "timings": timings}


def _light_traffic(port: int, name: str, stop: threading.Event) -> None:
    body = json.dumps({"user_id": "u42", "k": 10})
    while not stop.is_set():
        with contextlib.suppress(OSError):
            run.http_request(port, "POST", f"/endpoints/{name}/invocations", body, run.JSON_HEADERS)
        time.sleep(0.005)


def _serving_instances(port: int, endpoint: str) -> list[str]:
    """Instances of the endpoint that have answered at least one request (from /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = []
    for line in text.splitlines():
        if line.startswith("sagemaker_invocations_per_instance_total{") and f'endpoint="{endpoint}"' in line:
            labels, value = line.rsplit(" ", 1)
            if float(value) > 0:
                out.append(labels.split('instance="', 1)[1].split('"', 1)[0])
    return out


def render(results: dict[str, Any], a: argparse.Namespace) -> str:
    if results["scenario"] == "scaleout":
        t = results["timings"]
        lines = [
            f"## Scale-out 1 -> 2 instances of the 5k model ({len(t)} times), under light traffic",
            "",
            "| call accepted | new instance's first answer | InService again |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r['accepted_s'] * 1000:.1f} ms | {r['first_answer_s']:.2f} s | {r['in_service_s']:.2f} s |"
            for r in t
        ]
        lines.append(
            f"| median | {statistics.median(r['first_answer_s'] for r in t):.2f} s | "
            f"{statistics.median(r['in_service_s'] for r in t):.2f} s |"
        )
        return "\n".join(lines)
    first, *others = results["sides"]
    return "\n\n".join(_pair_table(results, first, other, a) for other in others)


def _pair_table(results: dict[str, Any], left: str, right: str, a: argparse.Namespace) -> str:
    rounds = 1 + max(r.get("round", 0) for r in results["load"])
    lines = [
        f"## {results['scenario']}: {left} (A) against {right} (B) — 5k model, {os.cpu_count()} CPUs, "
        f"{a.duration} s per run, {rounds} rounds, {time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "Medians over the rounds; B/A is the median of the per-round ratios (A and B run back to back in "
        "each round, in alternating order), with their range.",
        "",
        "| c | A req/s | B req/s | B/A (range) | A p50 ms | B p50 ms | CPU µs/req A / B | errors A / B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs: dict[int, dict[int, dict[str, dict[str, Any]]]] = {}
    for r in results["load"]:
        runs.setdefault(r["concurrency"], {}).setdefault(r.get("round", 0), {})[r["server"]] = r
    for conc, by_round in sorted(runs.items()):
        pairs = [(p[left], p[right]) for p in by_round.values() if left in p and right in p]
        ratios = sorted(y["rps"] / x["rps"] for x, y in pairs)
        med = statistics.median

        def col(side: int, key: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]] = pairs) -> float:
            return float(statistics.median(p[side][key] for p in pairs))

        lines.append(
            f"| {conc} | {col(0, 'rps'):.0f} | {col(1, 'rps'):.0f} | "
            f"{med(ratios):.3f} ({ratios[0]:.2f} to {ratios[-1]:.2f}) | "
            f"{col(0, 'p50_us') / 1000:.2f} | {col(1, 'p50_us') / 1000:.2f} | "
            f"{col(0, 'server_cpu_us_per_req'):.0f} / {col(1, 'server_cpu_us_per_req'):.0f} | "
            f"{sum(x['errors'] for x, _ in pairs)} / {sum(y['errors'] for _, y in pairs)} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "scenario", choices=["same", "hotpath", "sigv4", "metrics", "variants", "instances", "scaleout"]
    )
    ap.add_argument("--baseline-src", type=Path, default=None, help="checkout of the earlier code (hotpath)")
    ap.add_argument("--conc", default="1,8,32")
    ap.add_argument(
        "--duration", type=float, default=None, help="seconds per run (default 15; 3 with --quick)"
    )
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--attempts", type=int, default=2)
    ap.add_argument("--quiet-wait", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=1, help="A/B rounds per concurrency; medians reported")
    ap.add_argument("--repeats", type=int, default=5, help="scale-outs timed (scaleout)")
    ap.add_argument("--omp-threads", default="1")
    ap.add_argument("--quick", action="store_true", help="smoke check: 3 s runs, no retries")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    a.duration = a.duration if a.duration is not None else (3.0 if a.quick else 15.0)
    if a.quick:
        a.attempts, a.quiet_wait, a.warmup, a.repeats = 1, 5.0, 1.0, min(a.repeats, 2)
    a.conc = [int(c) for c in a.conc.split(",") if c.strip()]
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    results = scaleout(a) if a.scenario == "scaleout" else compare(a)
    out = a.out or run.RESULTS / f"compare-{a.scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(render(results, a))
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
