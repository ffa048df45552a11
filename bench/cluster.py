"""Instances on a Ray cluster and state in PostgreSQL, each against the single-machine default, in one run
on one box; prints two markdown tables.

What is measured, all on 127.0.0.0/8:

1. Invocations. A real two-node Ray cluster on loopback (``tests/support/ray_cluster.py``: head on
   127.0.0.2, second node on 127.0.0.3) and two servers with the 5k recommender of ``bench/run.py``,
   one instance with the same number of workers each: ``--compute local`` (the front door reaches the
   workers over Unix sockets) and ``--compute ray`` (the instance is a Ray actor on one of the nodes;
   the front door reaches its workers over TCP at the node's address). wrk with ``post.lua`` against
   both, back to back in alternating order, behind ``bench/run.py``'s quiet gate (the Ray nodes'
   processes count as ours, not as foreign load): req/s at ``--conc-load`` and p50/p99 at c=1. The
   front door's own CPU per request is shown too (the Ray instance's CPU is outside its process tree).
2. Control plane. After the Ray cluster is stopped: the local server above (SQLite in its state dir)
   and a third server with ``--database-url`` pointing at a PostgreSQL server started here
   (``tests/support/postgres.py``, pgserver's binaries, over its Unix socket), each with one endpoint
   of the same model. boto3 calls, alternating between the two servers call by call: DescribeEndpoint,
   ListEndpoints, and CreateModel followed by DeleteModel (timed as one pair); p50/p99 as the client
   sees them.
3. A load balancer in front. Another loopback Ray cluster and PostgreSQL, two servers on both
   (``--database-url``, ``--compute ray``; the first to start reconciles, the second follows the routes
   it publishes) and one endpoint of the same model, one instance with the same workers, created through
   the first. HAProxy (only when ``haproxy`` is on PATH; otherwise this part is skipped with a note),
   configured as in docs/cluster.md with two front ends: one to the first server alone, one to both
   (``balance leastconn``). wrk as in 1., alternating between three paths to the same instance: straight
   to the first server, HAProxy to the first server, HAProxy to both. Besides req/s and latency: the
   responses each server gave (HAProxy's per-server 2xx counters) and CPU per request of the front doors
   and of HAProxy.

Every process started here (servers, Ray nodes, PostgreSQL) is stopped on exit, on Ctrl-C and on
SIGTERM. Raw results go to ``bench/results/cluster-*.json``.

Usage: python bench/cluster.py [--duration 10] [--conc-load 16] [--calls 300] [--workers 2] [--no-haproxy]
       [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(REPO / "examples" / "recommender"), str(BENCH)]

import deploy  # noqa: E402  (examples/recommender/deploy.py)
import pack  # noqa: E402
import run  # noqa: E402  (bench/run.py: clients, waits, wrk runs behind the quiet gate)
from loadgen import ensure_wrk, run_wrk  # noqa: E402
from procinfo import HZ, Launched, tree_cpu_ticks  # noqa: E402

from tests.support.postgres import postgres_server  # noqa: E402
from tests.support.ray_cluster import HEAD_IP, RayCluster, ray_cluster  # noqa: E402

MOVIES = 5000
# sized to fit the test cluster's 2-CPU, 2 GiB nodes (Ray reserves it; nothing limits the processes)
INSTANCE_TYPES = {"ml.m5.large": {"cpus": 1, "memory_gib": 0.5}}
SERVER_ENV = {"MOORAGE_INSTANCE_TYPES": json.dumps(INSTANCE_TYPES)}


@dataclass
class Pid:
    """A process tree root that `run.measured_run` counts as ours (a Ray node's processes)."""

    pid: int


@dataclass
class Server:
    label: str
    tree: Launched
    sm: Any
    port: int
    state_dir: Path


def start_server(label: str, work: Path, stack: list[Launched], extra: list[str], timeout: float) -> Server:
    """``moorage serve`` on a free port with its own state dir, waited for until ListEndpoints answers."""
    port = run.free_port()
    state = work / f"state-{label}"
    cmd = [sys.executable, "-m", "moorage", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--state-dir", str(state), "--no-s3", "--log-level", "warning", *extra]
    tree = Launched.start("moorage", cmd, {**os.environ, **SERVER_ENV}, work / f"{label}.log", REPO)
    stack.append(tree)
    sm, _ = run.sagemaker_clients(port)
    try:
        run.wait_until(
            f"{label} server", lambda: tree.alive() and sm.list_endpoints() is not None, timeout, 0.2
        )
    except TimeoutError as e:
        raise RuntimeError(f"{label} server did not start ({e}):\n{tree.log_tail()}") from None
    run.log(f"{label}: serving on 127.0.0.1:{port}")
    return Server(label, tree, sm, port, state)


def deploy_endpoint(server: Server, archive: Path, workers: int, omp: str) -> tuple[str, float]:
    """The recommender as endpoint ``bench`` (one instance); its name and CreateEndpoint -> InService."""
    name = "bench"
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "OMP_NUM_THREADS": omp}
    deploy.create_model(server.sm, name, archive.as_uri(), env)
    deploy.create_endpoint_config(server.sm, name, name)
    timed = run.time_in_service(server.sm, name, name, timeout=180)
    run.log(f"{server.label}: CreateEndpoint -> InService {timed['in_service_s']:.2f} s")
    return name, timed["in_service_s"]


def ray_placement(server: Server, endpoint: str) -> str:
    """The node address the endpoint log names for the instance, else '?'."""
    log = server.state_dir / "logs" / f"{endpoint}.log"
    with contextlib.suppress(OSError):
        found = re.findall(r"is healthy on Ray node ([0-9.]+)", log.read_text(errors="replace"))
        if found:
            return str(found[-1])
    return "?"


def ray_roots(cluster: RayCluster) -> list[Pid]:
    return [Pid(p) for p in (*cluster.head.pids(), *cluster.second.pids())]


# ----------------------------------------------------------------------------- 1. invocations
def invocations(
    a: argparse.Namespace, R: dict[str, Any], wrk: str, archive: Path, work: Path, stack: list[Launched]
) -> Server:
    """Local and Ray side by side; returns the local server (kept for the control-plane part)."""
    with ray_cluster() as cluster:
        run.log(f"Ray cluster up at {cluster.address} (nodes {HEAD_IP}, 127.0.0.3)")
        local = start_server("local", work, stack, ["--compute", "local"], 60)
        ray = start_server("ray", work, stack, list(cluster.server_args()), 120)
        targets = []
        for server in (local, ray):
            endpoint, in_service = deploy_endpoint(server, archive, a.workers, a.omp_threads)
            R["in_service_s"][server.label] = in_service
            url = f"http://127.0.0.1:{server.port}/endpoints/{endpoint}/invocations"
            path = f"/endpoints/{endpoint}/invocations"
            status, body = run.http_request(server.port, "POST", path, run.PROBE, run.JSON_HEADERS)
            if status != 200:
                raise RuntimeError(f"{server.label} answered {status}: {body[:300]!r}")
            targets.append(run.Target(server.label, server.tree, url))
        R["ray_node"] = ray_placement(ray, "bench")
        run.log(f"ray: the instance runs on Ray node {R['ray_node']}")
        for server in (local, ray):
            run.settle(server.tree, 30)
        for t in targets:  # warm-up, not recorded
            run_wrk(wrk, t.url, 8, a.warmup, env={"N_USERS": str(run.USERS)})
        for i, conc in enumerate([1, a.conc_load]):
            for t in targets if i % 2 == 0 else targets[::-1]:
                everyone: list[Any] = [*stack, *ray_roots(cluster)]
                r = run.measured_run(wrk, t, everyone, conc, a.duration, a.attempts, a.quiet_wait)
                front = r["server_cpu_by_role_cores"].get("front door", 0.0)
                r["front_door_cpu_us_per_req"] = round(front * 1e6 / r["rps"], 1) if r["rps"] else None
                R["load"].append(r)
        R["shutdown"].append({"server": "ray", **ray.tree.stop()})
        stack.remove(ray.tree)
    run.log("Ray cluster stopped")
    return local


# ----------------------------------------------------------------------------- 2. control plane
def control_plane(
    a: argparse.Namespace, R: dict[str, Any], archive: Path, work: Path, stack: list[Launched], local: Server
) -> None:
    with postgres_server(work / "pg") as pg:
        database = pg.create_database("bench")
        url = pg.url(database)
        run.log(f"PostgreSQL up (Unix socket in {pg.socket_dir}, port {pg.port})")
        postgres = start_server("postgres", work, stack, ["--database-url", url], 60)
        deploy_endpoint(postgres, archive, a.workers, a.omp_threads)
        sides = {"SQLite": local, "PostgreSQL": postgres}
        counter = iter(range(10**9))

        def create_delete(sm: Any) -> None:
            name = f"cp-{next(counter)}"
            sm.create_model(
                ModelName=name,
                ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
                PrimaryContainer={"Image": "moorage/bench:latest", "ModelDataUrl": archive.as_uri()},
            )
            sm.delete_model(ModelName=name)

        calls: dict[str, Callable[[Any], object]] = {
            "DescribeEndpoint": lambda sm: sm.describe_endpoint(EndpointName="bench"),
            "ListEndpoints": lambda sm: sm.list_endpoints(),
            "CreateModel + DeleteModel": create_delete,
        }
        for server in sides.values():
            run.settle(server.tree, 30)
        for call, fn in calls.items():
            samples: dict[str, list[float]] = {store: [] for store in sides}
            order = list(sides.items())
            for i in range(a.warm_calls + a.calls):
                for store, server in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    fn(server.sm)
                    if i >= a.warm_calls:
                        samples[store].append((time.perf_counter() - t0) * 1000)
            for store, ms in samples.items():
                row = {"call": call, "store": store, **summary(ms)}
                R["control_plane"].append(row)
                run.log(f"  {call:26s} {store:10s} p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms")
        R["shutdown"].append({"server": "postgres", **postgres.tree.stop()})
        stack.remove(postgres.tree)


def summary(ms: list[float]) -> dict[str, Any]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 3), "p99_ms": round(q[98], 3)}


# ----------------------------------------------------------------------------- 3. a load balancer
HAPROXY_INSTALL = "apt-get install haproxy (Debian/Ubuntu), dnf install haproxy, or brew install haproxy"
LB_PATHS = (  # label, title in the table
    ("direct", "client → front door A"),
    ("haproxy-1", "client → HAProxy → A"),
    ("haproxy-2", "client → HAProxy → A + B (leastconn)"),
)


def haproxy_config(port_one: int, port_two: int, a: int, b: int, stats: Path) -> str:
    """docs/cluster.md's configuration on loopback, plus a front end to A alone and a stats socket."""
    return f"""global
    stats socket {stats} mode 600 level user

defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    option http-keep-alive

frontend sagemaker
    bind 127.0.0.1:{port_two}
    default_backend moorage

backend moorage
    balance leastconn
    option httpchk GET /ping
    http-check expect status 200
    server a 127.0.0.1:{a} check inter 2s fall 2 rise 1
    server b 127.0.0.1:{b} check inter 2s fall 2 rise 1

frontend sagemaker-a
    bind 127.0.0.1:{port_one}
    default_backend moorage-a

backend moorage-a
    option httpchk GET /ping
    http-check expect status 200
    server a 127.0.0.1:{a} check inter 2s fall 2 rise 1
"""


def haproxy_stats(sock: Path) -> dict[tuple[str, str], dict[str, str]]:
    """`show stat` of every server, by (backend, server)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(b"show stat -1 4 -1\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().strip().splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return {(r["pxname"], r["svname"]): r for r in rows}


def responses_by_server(sock: Path) -> dict[str, int]:
    """2xx and other responses so far of each server of backend `moorage` (A and B) and `moorage-a`."""
    out = {}
    for (backend, server), row in haproxy_stats(sock).items():
        kinds = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
        out[f"{backend}/{server}"] = sum(int(row.get(k) or 0) for k in kinds)
    return out


def start_haproxy(
    work: Path, stack: list[Launched], haproxy: str, a: Server, b: Server
) -> tuple[Launched, dict[str, Any]]:
    port_one, port_two = run.free_port(), run.free_port()
    sock = work / "haproxy.sock"
    cfg = work / "haproxy.cfg"
    cfg.write_text(haproxy_config(port_one, port_two, a.port, b.port, sock))
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if check.returncode != 0 or "[WARNING]" in check.stdout + check.stderr:
        raise RuntimeError(f"haproxy -c rejects or warns about {cfg}:\n{check.stdout}{check.stderr}")
    tree = Launched.start(
        "haproxy", [haproxy, "-db", "-f", str(cfg)], dict(os.environ), work / "haproxy.log", REPO
    )
    stack.append(tree)

    def all_up() -> bool:
        return all(row.get("status") == "UP" for row in haproxy_stats(sock).values())

    try:
        run.wait_until("haproxy's servers UP", lambda: tree.alive() and sock.exists() and all_up(), 20, 0.2)
    except TimeoutError as e:
        raise RuntimeError(f"haproxy did not come up ({e}):\n{tree.log_tail()}") from None
    run.log(f"haproxy: 127.0.0.1:{port_one} -> A, 127.0.0.1:{port_two} -> A + B (leastconn)")
    return tree, {"one": port_one, "two": port_two, "sock": sock}


def measured_with_cpu(
    a: argparse.Namespace,
    wrk: str,
    target: run.Target,
    everyone: list[Any],
    conc: int,
    trees: dict[str, Launched],
    sock: Path,
) -> dict[str, Any]:
    """`run.measured_run`, one try at a time (least disturbed kept), with the CPU of each tree in `trees`
    (whole process tree: a front door's instances run on Ray, outside it) and the responses of each
    HAProxy server over the same try. CPU includes the quiet-gate wait before the run (idle servers)."""
    tries = []
    for _ in range(max(1, a.attempts)):
        t0 = {k: sum(tree_cpu_ticks([t.pid]).values()) for k, t in trees.items()}
        s0 = responses_by_server(sock)
        r = run.measured_run(wrk, target, everyone, conc, a.duration, 1, a.quiet_wait)
        t1 = {k: sum(tree_cpu_ticks([t.pid]).values()) for k, t in trees.items()}
        s1 = responses_by_server(sock)
        ok = max(1, r["requests"] - r["errors"])
        r["cpu_us_per_req"] = {k: round((t1[k] - t0[k]) / HZ * 1e6 / ok, 1) for k in trees}
        r["haproxy_responses"] = {k: s1[k] - s0.get(k, 0) for k in s1}
        tries.append(r)
        if r["foreign_cpu_cores"] <= 0.3:
            break
    best = min(tries, key=lambda x: x["foreign_cpu_cores"])
    best["attempts_foreign_cores"] = [t["foreign_cpu_cores"] for t in tries]
    best["attempts_rps"] = [t["rps"] for t in tries]
    run.log(f"    CPU µs/req {best['cpu_us_per_req']}  responses {best['haproxy_responses']}")
    return best


def load_balancer(
    a: argparse.Namespace, R: dict[str, Any], wrk: str, archive: Path, work: Path, stack: list[Launched]
) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        R["lb_skipped"] = f"haproxy is not on PATH; to measure this part, install it: {HAPROXY_INSTALL}"
        run.log(f"load balancer: skipped, {R['lb_skipped']}")
        return
    banner = subprocess.run([haproxy, "-v"], capture_output=True, text=True, check=False).stdout
    R["haproxy_version"] = " ".join(banner.split()[:3:2]) or "HAProxy"  # "HAProxy 2.6.12-1+deb12u4"
    run.log(R["haproxy_version"])
    started: list[Launched] = []
    with ray_cluster() as cluster, postgres_server(work / "pg-lb") as pg:
        try:
            url = pg.url(pg.create_database("lb"))
            run.log(f"load balancer: Ray cluster at {cluster.address}, PostgreSQL up")
            args = ["--database-url", url, *cluster.server_args()]
            doors = []
            for label in ("A", "B"):  # A starts first, so A reconciles
                doors.append(start_server(f"door-{label}", work, stack, args, 120))
                started.append(doors[-1].tree)
            door_a, door_b = doors
            endpoint, _ = deploy_endpoint(door_a, archive, a.workers, a.omp_threads)
            path = f"/endpoints/{endpoint}/invocations"

            def answers(port: int) -> bool:
                return run.http_request(port, "POST", path, run.PROBE, run.JSON_HEADERS)[0] == 200

            for door in doors:  # B answers once it installed the route A published
                run.wait_until(f"{door.label} routes {endpoint}", lambda d=door: answers(d.port), 30, 0.1)
            R["lb_ray_node"] = ray_placement(door_a, endpoint)
            lb, ports = start_haproxy(work, stack, haproxy, door_a, door_b)
            started.append(lb)
            for port in (ports["one"], ports["two"]):
                if not answers(port):
                    raise RuntimeError(f"haproxy on port {port} does not pass the invocation on")
            for door in doors:
                run.settle(door.tree, 30)
            trees = {"A": door_a.tree, "B": door_b.tree, "haproxy": lb}
            targets = [
                run.Target(label, door_a.tree, f"http://127.0.0.1:{port}{path}")
                for (label, _), port in zip(LB_PATHS, (door_a.port, ports["one"], ports["two"]), strict=True)
            ]
            for t in targets:  # warm-up, not recorded
                run_wrk(wrk, t.url, 8, a.warmup, env={"N_USERS": str(run.USERS)})
            for i, conc in enumerate([1, a.conc_load]):
                for t in targets if i % 2 == 0 else targets[::-1]:
                    everyone: list[Any] = [*stack, *ray_roots(cluster)]
                    R["lb"].append(measured_with_cpu(a, wrk, t, everyone, conc, trees, ports["sock"]))
        finally:
            for tree in reversed(started):  # before the cluster and the database they use go away
                if tree in stack:
                    R["shutdown"].append({"server": tree.name, **tree.stop()})
                    stack.remove(tree)
    run.log("load balancer: Ray cluster and PostgreSQL stopped")


# ----------------------------------------------------------------------------- report
def render(R: dict[str, Any]) -> str:
    meta = R["meta"]
    lines = [
        f"## Invocations: local (Unix sockets) against Ray (TCP) — {meta['started']}, {meta['nproc']} CPUs, "
        f"5k recommender, 1 instance x {meta['workers']} workers, {meta['duration_s']:g} s per run",
        "",
        f"wrk on loopback; req/s at c={meta['conc_load']}, latencies in ms; front-door CPU = the `moorage "
        "serve` process alone, per answered request; other load = CPU used by processes not started here "
        f"during the kept run (least of up to {meta['attempts']} tries). Ray instance on node "
        f"{R.get('ray_node', '?')}.",
        "",
        f"| compute | req/s c={meta['conc_load']} | p50 / p99 c=1 | p50 / p99 c={meta['conc_load']} "
        f"| front-door CPU µs/req c={meta['conc_load']} | errors "
        f"| other load, cores c=1 / c={meta['conc_load']} | CreateEndpoint → InService |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {(r["server"], r["concurrency"]): r for r in R["load"]}
    for label, title in (("local", "local (Unix socket)"), ("ray", "ray (TCP)")):
        one, load = runs.get((label, 1)), runs.get((label, meta["conc_load"]))
        if one is None and load is None:
            continue

        def lat(r: dict[str, Any] | None) -> str:
            return "-" if r is None else f"{r['p50_us'] / 1000:.2f} / {r['p99_us'] / 1000:.2f}"

        cpu = load.get("front_door_cpu_us_per_req") if load else None
        errors = sum(r["errors"] for r in (one, load) if r)
        start = R["in_service_s"].get(label)
        rps = "-" if load is None else f"{load['rps']:.0f}"
        cpu_cell = "-" if cpu is None else f"{cpu:.0f}"
        start_cell = "-" if start is None else f"{start:.2f} s"
        other = " / ".join("-" if r is None else f"{r['foreign_cpu_cores']:.2f}" for r in (one, load))
        lines.append(
            f"| {title} | {rps} | {lat(one)} | {lat(load)} | {cpu_cell} | {errors} | {other} | {start_cell} |"
        )
    if R["control_plane"]:
        lines += [
            "",
            f"## Control plane: SQLite against PostgreSQL (Unix socket) — {meta['calls']} calls each, boto3, "
            "alternating between the two servers",
            "",
            "| call | SQLite p50 / p99 ms | PostgreSQL p50 / p99 ms |",
            "|---|---|---|",
        ]
        cells = {
            (r["call"], r["store"]): f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" for r in R["control_plane"]
        }
        for call in dict.fromkeys(r["call"] for r in R["control_plane"]):
            lines.append(
                f"| {call} | {cells.get((call, 'SQLite'), '-')} | {cells.get((call, 'PostgreSQL'), '-')} |"
            )
    lines += render_lb(R)
    return "\n".join(lines)


def render_lb(R: dict[str, Any]) -> list[str]:
    meta = R["meta"]
    if R.get("lb_skipped"):
        return ["", f"## Load balancer: skipped ({R['lb_skipped']})"]
    if not R["lb"]:
        return []
    c = meta["conc_load"]
    lines = [
        "",
        f"## A load balancer in front: {R.get('haproxy_version', 'HAProxy')}, two servers on one PostgreSQL "
        f"and one Ray cluster, 1 instance x {meta['workers']} workers (Ray node {R.get('lb_ray_node', '?')})",
        "",
        f"wrk as above; share of responses from A / B at c={c} (HAProxy's counters; straight to A: all A); "
        "CPU of each process tree per answered request.",
        "",
        f"| path | req/s c={c} | p50 / p99 ms c=1 | p50 / p99 ms c={c} | errors | A / B share c={c} "
        f"| CPU µs/req c={c}: A / B / HAProxy | other load, cores c=1 / c={c} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = {(r["server"], r["concurrency"]): r for r in R["lb"]}
    for label, title in LB_PATHS:
        one, load = runs.get((label, 1)), runs.get((label, c))
        if one is None and load is None:
            continue

        def lat(r: dict[str, Any] | None) -> str:
            return "-" if r is None else f"{r['p50_us'] / 1000:.2f} / {r['p99_us'] / 1000:.2f}"

        share, cpu = "-", "-"
        if load is not None:
            got = load["haproxy_responses"]
            a_n, b_n = (
                (got.get("moorage/a", 0), got.get("moorage/b", 0))
                if label == "haproxy-2"
                else (got.get("moorage-a/a", 0), 0)
                if label == "haproxy-1"
                else (load["requests"] - load["errors"], 0)
            )
            if a_n + b_n:
                share = f"{100 * a_n / (a_n + b_n):.0f} % / {100 * b_n / (a_n + b_n):.0f} %"
            cpu = " / ".join(f"{load['cpu_us_per_req'][k]:.0f}" for k in ("A", "B", "haproxy"))
        errors = sum(r["errors"] for r in (one, load) if r)
        rps = "-" if load is None else f"{load['rps']:.0f}"
        other = " / ".join("-" if r is None else f"{r['foreign_cpu_cores']:.2f}" for r in (one, load))
        lines.append(f"| {title} | {rps} | {lat(one)} | {lat(load)} | {errors} | {share} | {cpu} | {other} |")
    return lines


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--duration", type=float, default=None, help="seconds per wrk run (default 10; 3 with --quick)"
    )
    ap.add_argument("--conc-load", type=int, default=16, help="wrk connections for the throughput run")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds per server (default 2)")
    ap.add_argument(
        "--calls", type=int, default=None, help="timed calls per control-plane call (default 300)"
    )
    ap.add_argument("--warm-calls", type=int, default=20, help="untimed calls first")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="workers of each instance")
    ap.add_argument("--omp-threads", default="1", help="OMP_NUM_THREADS for the instances' workers")
    ap.add_argument(
        "--attempts", type=int, default=None, help="tries per wrk run when the box is busy (default 3)"
    )
    ap.add_argument("--quiet-wait", type=float, default=None, help="max seconds to wait for a quiet box")
    ap.add_argument("--no-haproxy", action="store_true", help="skip the load-balancer part")
    ap.add_argument("--quick", action="store_true", help="smoke check: 3 s runs, 50 calls, no retries")
    ap.add_argument(
        "--out", type=Path, default=None, help="raw JSON (default bench/results/cluster-<time>.json)"
    )
    a = ap.parse_args(argv)
    a.duration = a.duration if a.duration is not None else (3.0 if a.quick else 10.0)
    a.warmup = a.warmup if a.warmup is not None else (1.0 if a.quick else 2.0)
    a.calls = a.calls if a.calls is not None else (50 if a.quick else 300)
    a.attempts = a.attempts if a.attempts is not None else (1 if a.quick else 3)
    a.quiet_wait = a.quiet_wait if a.quiet_wait is not None else (5.0 if a.quick else 20.0)
    if a.calls < 2 or a.workers < 1 or a.conc_load < 1:
        ap.error("--calls needs at least 2, --workers and --conc-load at least 1")
    return a


@contextlib.contextmanager
def stopped_at_exit(stack: list[Launched], R: dict[str, Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for tree in reversed(stack):
            R["shutdown"].append({"server": tree.name, **tree.stop()})
        stack.clear()


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    wrk = ensure_wrk()
    if why := run.moorage_available():
        raise SystemExit(f"moorage is not runnable here ({why})")
    out_path = a.out or run.RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    R: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "nproc": os.cpu_count(),
            "cpu": run._cpu_model(),
            "duration_s": a.duration,
            "conc_load": a.conc_load,
            "workers": a.workers,
            "calls": a.calls,
            "attempts": a.attempts,
            "argv": sys.argv[1:],
        },
        "in_service_s": {},
        "load": [],
        "control_plane": [],
        "lb": [],
        "shutdown": [],
    }
    archive = pack.build(users=run.USERS, movies=MOVIES)
    work = Path(tempfile.mkdtemp(prefix="mclu-", dir="/tmp"))  # short: Unix socket paths live below it
    stack: list[Launched] = []
    failed, rc = True, 0
    t0 = time.monotonic()
    try:
        with run.terminate_on_sigterm():
            try:
                with stopped_at_exit(stack, R):
                    local = invocations(a, R, wrk, archive, work, stack)
                    control_plane(a, R, archive, work, stack, local)
                    R["shutdown"].append({"server": "local", **local.tree.stop()})  # idle from here on
                    stack.remove(local.tree)
                    if a.no_haproxy:
                        R["lb_skipped"] = "--no-haproxy"
                    else:
                        load_balancer(a, R, wrk, archive, work, stack)
                failed = False
            finally:
                R["meta"]["wall_s"] = round(time.monotonic() - t0, 1)
                out_path.parent.mkdir(parents=True, exist_ok=True)
                out_path.write_text(json.dumps(R, indent=1))
                run._keep_logs(work, out_path.with_suffix(".logs") if failed else None)
    except KeyboardInterrupt:
        run.log("interrupted; every started process is stopped")
        rc = 130
    if R["load"] or R["control_plane"] or R["lb"] or R.get("lb_skipped"):
        print(render(R))
    print(f"\nraw results: {out_path}   ({R['meta']['wall_s']:.0f} s in all)")
    return rc


if __name__ == "__main__":
    sys.exit(main())
