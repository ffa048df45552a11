"""Data capture and shadow variants: what each costs the caller, against a plain endpoint of the same
model, on one Moorage server, in one run.

One server (its embedded S3 store on) serves four endpoints of one cheap JSON model (bench/pipeline.py's
second container: microseconds of work, so the front door's share of each request dominates), each one
instance with ``--workers`` workers:

- ``plain``: the model alone;
- ``capture-s3``: DataCaptureConfig, 100 % sampling, Input and Output, JSON content type listed, to
  ``s3://<bucket>/capture`` in the embedded store;
- ``capture-local``: the same, to a folder (``file://``);
- ``shadow``: the same production variant, plus a shadow variant of the same model with the same weight
  (every request copied).

wrk (bench/loadgen.py, bench/post.lua) measures, ``--rounds`` times, each round in a rotated order:

1. throughput at ``--conc`` (a concurrency that keeps the front door busy): plain, capture-s3,
   capture-local;
2. the caller's latency at c=1: plain, capture-s3, shadow, with the scheduler placing every process;
3. (with 2 or more CPUs, unless ``--no-pin``) the caller's latency at c=1, plain and shadow, with the
   shadow's instance pinned to a CPU of its own and everything else of the run (wrk, the front door, the
   production workers, the store) on another: as on SageMaker, where a shadow has instances of its own.
   Both endpoints run under the same placement.

Reported: medians over the rounds, each side's ratio or difference to plain within the same round (median
and range), CPU per answered request by process (front door, the endpoint's production workers, the
shadow's workers, the S3 store), the CPU other workloads used during each run, and checks: the records in
the bucket and the folder against the requests answered, and the copies the shadow answered and dropped
(/metrics) against the caller's requests.

The server writes captured data every ``--capture-flush`` seconds (MOORAGE_CAPTURE_FLUSH_SECONDS, 0.5 here
against the default 5), so each run holds about as many batches as a long run would per second and its
writer's work falls inside it; after a capture run its CPU is counted for two more flush intervals (the
last batch), and the next run starts only once every answered request is in the bucket or the folder.

``--instructions N`` adds a count that does not move with the machine's load: a second server under
valgrind's callgrind (bench/instructions.py's method), the same endpoints, N requests to each over one
keep-alive connection with instrumentation on, each thread of the front door counted apart (the event
loop against the capture writer's thread). Shadow workers and the S3 store run outside valgrind.

Usage: python bench/safe_deployment.py [--rounds 4] [--duration 3] [--conc 16] [--workers 1] [--no-pin]
                                       [--instructions 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import run  # noqa: E402  (bench/run.py: ports, clients, waits)
from loadgen import ensure_wrk, run_wrk  # noqa: E402
from pipeline import MODEL  # noqa: E402  (the cheap JSON model of the pipeline bench)
from procinfo import HZ, Launched, cmdline, system_busy_ticks, tree_cpu_ticks, wait_quiet  # noqa: E402

from tests.support.models import build_model_tar  # noqa: E402

USERS = 10000
BUCKET = "bench-capture"
CAPTURED_RECORD = re.compile(rb'"eventId"')
TARGET_CAPTURE_RATIO = 0.95  # throughput with 100 % capture, against plain
TARGET_SHADOW_ADDED_P50_MS = 0.1  # the caller's p50 with a shadow, against plain, c=1


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), "[safe-deployment]", *parts, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the server and endpoints
@dataclass
class Server:
    tree: Launched
    port: int
    sm: Any
    s3: Any
    work: Path  # its TMPDIR: the instances' socket folders (instance.json) are below it

    def url(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.port}/endpoints/{endpoint}/invocations"


def start_server(
    work: Path, name: str, valgrind: list[str] | None = None, env: dict[str, str] | None = None
) -> Server:
    """`moorage serve` with its embedded S3 store, TMPDIR in `work` (so its run folder can be found)."""
    port = run.free_port()
    tmp = work / f"tmp-{name}"
    tmp.mkdir(parents=True)
    cmd = [*(valgrind or []), sys.executable, "-m", "moorage", "serve", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--state-dir", str(work / f"state-{name}"), "--log-level", "warning"]
    full_env = {**os.environ, "TMPDIR": str(tmp), **(env or {})}
    tree = Launched.start("moorage", cmd, full_env, work / f"{name}.log", run.REPO)
    sm, _ = run.sagemaker_clients(port)
    s3 = _s3_client(port)
    try:
        run.wait_until(
            f"moorage serve ({name})",
            lambda: tree.alive() and sm.list_endpoints() is not None,
            600 if valgrind else 90,
            0.2,
        )
    except TimeoutError as e:
        tree.stop()
        raise RuntimeError(f"moorage did not start ({e}):\n{tree.log_tail()}") from None
    return Server(tree, port, sm, s3, tmp)


def _s3_client(port: int) -> Any:
    key, secret = run.BENCH_KEYS
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def _capture(destination: str) -> dict[str, Any]:
    """100 % sampling, both sides, JSON recorded as text: what a Model Monitor set-up asks for."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }


def _variant(name: str, weight: float = 1.0) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": "echo",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "InitialVariantWeight": weight,
    }


def deploy(server: Server, work: Path, workers: int, local_dir: Path) -> dict[str, float]:
    """The four endpoints (created together, waited for together); seconds to InService of each."""
    sm = server.sm
    archive = build_model_tar(work / "echo.tar.gz", textwrap.dedent(MODEL))
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "OMP_NUM_THREADS": "1"}
    sm.create_model(ModelName="echo", PrimaryContainer={"ModelDataUrl": archive.as_uri(), "Environment": env})
    server.s3.create_bucket(Bucket=BUCKET)
    configs: dict[str, dict[str, Any]] = {
        "plain": {},
        "capture-s3": {"DataCaptureConfig": _capture(f"s3://{BUCKET}/capture")},
        "capture-local": {"DataCaptureConfig": _capture(local_dir.as_uri())},
        # the shadow's weight equals production's: every request is copied
        "shadow": {"ShadowProductionVariants": [_variant("Shadow", 1.0)]},
    }
    started = {}
    for name, extra in configs.items():
        sm.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[_variant("AllTraffic")], **extra
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        started[name] = time.perf_counter()
    seconds = {}
    for name in configs:
        run.wait_until(f"endpoint {name} InService", partial(_in_service, sm, name), 600, 0.05)
        seconds[name] = round(time.perf_counter() - started[name], 2)
    return seconds


def _in_service(sm: Any, name: str) -> bool:
    described = sm.describe_endpoint(EndpointName=name)
    status: str = described["EndpointStatus"]
    if status == "Failed":
        raise RuntimeError(f"endpoint {name} failed: {described.get('FailureReason')}")
    return status == "InService"


def instance_pids(server: Server, endpoint: str) -> dict[str, list[int]]:
    """Variant name -> the pids of its instances (the instance process and its workers), from
    DescribeEndpoint's MoorageInstances (a member botocore's model drops, read off the raw answer) and each
    instance's instance.json in the server's run folder."""
    raw: dict[str, Any] = {}

    def keep_raw(http_response: Any, **_: Any) -> None:
        with contextlib.suppress(ValueError, TypeError):
            raw.update(json.loads(http_response.content))

    server.sm.meta.events.register("after-call.sagemaker.DescribeEndpoint", keep_raw)
    try:
        server.sm.describe_endpoint(EndpointName=endpoint)
    finally:
        server.sm.meta.events.unregister("after-call.sagemaker.DescribeEndpoint", keep_raw)
    out: dict[str, list[int]] = {}
    for placed in raw.get("MoorageInstances", []):
        found = list(server.work.glob(f"*/{placed['InstanceId']}/instance.json"))
        if not found:
            raise RuntimeError(f"no instance.json for instance {placed['InstanceId']} below {server.work}")
        info = json.loads(found[0].read_text())
        pids = [int(info["pid"]), *(int(w["pid"]) for w in info["workers"])]
        out.setdefault(placed["VariantName"], []).extend(pids)
    return out


# ----------------------------------------------------------------------------- CPU placement
def _threads(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    return []


def set_affinity(pids: list[int], cpus: set[int]) -> None:
    """Every thread of every process in `pids` on `cpus` (a process's own call would move one thread)."""
    for pid in pids:
        for tid in _threads(pid):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def placement(server: Server, shadow_pids: list[int] | None, cpus: list[int]) -> Iterator[None]:
    """With `shadow_pids`: those on cpus[1], the rest of the server and this process (so wrk, its child)
    on cpus[0]. Without: everything on every CPU. Restored afterwards."""
    everything = set(cpus)
    tree = server.tree.refresh()
    if shadow_pids is None:
        set_affinity(tree, everything)
        yield
        return
    set_affinity([p for p in tree if p not in shadow_pids], {cpus[0]})
    set_affinity(shadow_pids, {cpus[1]})
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)
        set_affinity(server.tree.refresh(), everything)


# ----------------------------------------------------------------------------- one measured run
@dataclass
class Roles:
    """Which process of the server is which, for CPU per request."""

    front_door: int
    store: set[int]
    production: dict[str, set[int]]  # endpoint -> its production variant's pids
    shadow: set[int]
    capture: set[int]  # the capture process (moorage.capture.process), a child of the front door

    @classmethod
    def of(cls, server: Server, endpoints: list[str]) -> Roles:
        production: dict[str, set[int]] = {}
        shadow: set[int] = set()
        for endpoint in endpoints:
            for variant, pids in instance_pids(server, endpoint).items():
                if variant == "Shadow":
                    shadow |= set(pids)
                else:
                    production.setdefault(endpoint, set()).update(pids)
        pids = server.tree.refresh()
        store = {p for p in pids if "weed" in cmdline(p).split(" ", 1)[0]}
        capture = {p for p in pids if "moorage.capture.process" in cmdline(p)}
        return cls(server.tree.pid, store, production, shadow, capture)


def metric_sum(port: int, name: str, endpoint: str, variant: str) -> float:
    """A counter of one variant in GET /metrics (the server's own, unsigned)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    wanted = (f'endpoint="{endpoint}"', f'variant="{variant}"')
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def measured(
    wrk: str, server: Server, roles: Roles, endpoint: str, conc: int, duration: float, settle: float = 0.0
) -> dict[str, Any]:
    """One wrk run: its numbers, the CPU each part of the server used per answered request, wrk's own, and
    other workloads'. `settle`: seconds after wrk still counted in the CPU per request (the capture
    writer's last batch of the run), not in cores or throughput."""
    copies0 = metric_sum(server.port, "sagemaker_invocations_total", endpoint, "Shadow")
    dropped0 = metric_sum(server.port, "moorage_shadow_copies_dropped_total", endpoint, "Shadow")
    ticks0, busy0 = tree_cpu_ticks([server.tree.pid]), system_busy_ticks()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = run_wrk(wrk, server.url(endpoint), conc, duration, env={"N_USERS": str(USERS), "K": "10"})
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks1, busy1 = tree_cpu_ticks([server.tree.pid]), system_busy_ticks()
    time.sleep(settle)
    ticks2 = tree_cpu_ticks([server.tree.pid]) if settle else ticks1
    during = {p: t - ticks0.get(p, 0) for p, t in ticks1.items()}
    total = {p: t - ticks0.get(p, 0) for p, t in ticks2.items()}
    wrk_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    ok: int = max(1, r["requests"] - r["errors"])

    def us_per_req(pids: set[int]) -> float:
        return round(sum(d for p, d in total.items() if p in pids) / HZ * 1e6 / ok, 1)

    r.update(
        {
            "endpoint": endpoint,
            "concurrency": conc,
            "cpu_us_per_req": {
                "front door": us_per_req({roles.front_door}),
                "production workers": us_per_req(roles.production.get(endpoint, set())),
                "shadow workers": us_per_req(roles.shadow) if endpoint == "shadow" else 0.0,
                "S3 store": us_per_req(roles.store),
                "capture process": us_per_req(roles.capture),
            },
            "settle_s": settle,
            "front_door_cores": round(during.get(roles.front_door, 0) / HZ / wall, 2),
            "wrk_cores": round(wrk_s / wall, 2),
            "other_load_cores": round(
                max(0.0, (busy1 - busy0 - sum(during.values())) / HZ - wrk_s) / wall, 2
            ),
        }
    )
    if endpoint == "shadow":
        copies = metric_sum(server.port, "sagemaker_invocations_total", endpoint, "Shadow") - copies0
        dropped = (
            metric_sum(server.port, "moorage_shadow_copies_dropped_total", endpoint, "Shadow") - dropped0
        )
        r["shadow_copies_answered"], r["shadow_copies_dropped"] = int(copies), int(dropped)
    return r


# ----------------------------------------------------------------------------- the wall-clock part
THROUGHPUT = ("plain", "capture-s3", "capture-local")
LATENCY = ("plain", "capture-s3", "shadow")
PINNED = ("plain", "shadow")
PINNED_PHASE = "latency, shadow on its own CPU"


def rotated(sides: tuple[str, ...], round_: int) -> list[str]:
    k = round_ % len(sides)
    return list(sides[k:] + sides[:k])


def wall_clock(a: argparse.Namespace, wrk: str, work: Path) -> dict[str, Any]:
    local_dir = work / "captured"
    server = start_server(work, "wall", env={"MOORAGE_CAPTURE_FLUSH_SECONDS": str(a.capture_flush)})
    results: dict[str, Any] = {"runs": []}
    try:
        results["in_service_s"] = deploy(server, work, a.workers, local_dir)
        records = CapturedRecords(server, local_dir)
        roles = Roles.of(server, ["plain", "capture-s3", "capture-local", "shadow"])
        results["shadow_pids"] = sorted(roles.shadow)
        for name in ("plain", "capture-s3", "capture-local", "shadow"):  # each answers, and warms up
            status, body = run.http_request(
                server.port, "POST", f"/endpoints/{name}/invocations", run.PROBE, run.JSON_HEADERS
            )
            if status != 200:
                raise RuntimeError(f"{name} answered {status}: {body[:300]!r}")
            run_wrk(wrk, server.url(name), 8, 1, env={"N_USERS": str(USERS)})
        records.drain()
        cpus = sorted(os.sched_getaffinity(0))
        pin = a.pin and len(cpus) >= 2
        for round_ in range(a.rounds):
            waited, before = wait_quiet(0.3, a.quiet_wait, [server.tree.pid])
            log(
                f"round {round_ + 1}/{a.rounds} (waited {waited:.0f} s for a quieter box: {before:.2f} cores)"
            )
            phases: list[tuple[str, tuple[str, ...], int, list[int] | None]] = [
                ("throughput", THROUGHPUT, a.conc, None),
                ("latency", LATENCY, 1, None),
            ]
            if pin:
                phases.append((PINNED_PHASE, PINNED, 1, sorted(roles.shadow)))
            for phase, sides, conc, shadow_pids in phases:
                with placement(server, shadow_pids, cpus):
                    for name in rotated(sides, round_):
                        # a capture run's last batch is written up to one flush interval after wrk
                        settle = 2 * a.capture_flush + 0.2 if name.startswith("capture") else 0.0
                        r = measured(wrk, server, roles, name, conc, a.duration, settle)
                        r.update({"phase": phase, "round": round_})
                        if name.startswith("capture"):
                            r["capture_drain_s"] = records.drain()
                        results["runs"].append(r)
                        log(
                            f"  {phase:30s} {name:13s} c={conc:<3d} {r['rps']:>7.0f} req/s  "
                            f"p50 {r['p50_us'] / 1000:.3f} ms  p99 {r['p99_us'] / 1000:.2f} ms  "
                            f"front door {r['cpu_us_per_req']['front door']:.0f} µs/req  "
                            f"capture process {r['cpu_us_per_req']['capture process']:.0f} µs/req  "
                            f"other load {r['other_load_cores']:.2f}"
                        )
        results["captured"] = records.summary()
    finally:
        results["shutdown"] = server.tree.stop(grace=30)
    return results


class CapturedRecords:
    """Records written so far to the bucket and to the folder; each object is read once (the writer
    never changes an object it has written)."""

    def __init__(self, server: Server, local_dir: Path) -> None:
        self.server, self.local_dir = server, local_dir
        self.seen: set[str] = set()
        self.counts = {"capture-s3": 0, "capture-local": 0}

    def refresh(self) -> dict[str, int]:
        s3 = self.server.s3
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="capture/"):
            for item in page.get("Contents", []):
                if (key := f"s3:{item['Key']}") not in self.seen:
                    body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                    self.counts["capture-s3"] += len(CAPTURED_RECORD.findall(body))
                    self.seen.add(key)
        for path in self.local_dir.rglob("*.jsonl"):
            if (key := f"file:{path}") not in self.seen:
                self.counts["capture-local"] += len(CAPTURED_RECORD.findall(path.read_bytes()))
                self.seen.add(key)
        return dict(self.counts)

    def answered(self) -> dict[str, int]:
        return {
            name: int(metric_sum(self.server.port, "sagemaker_invocations_total", name, "AllTraffic"))
            for name in self.counts
        }

    def drain(self, timeout: float = 30.0) -> float:
        """Wait until every answered request of the capture endpoints is written (so one run's writing
        does not fall into the next run); seconds waited."""
        t0 = time.monotonic()
        answered = self.answered()
        while any(n < answered[k] for k, n in self.refresh().items()):
            if time.monotonic() - t0 > timeout:
                log(f"  capture not written within {timeout:.0f} s: {self.counts} of {answered}")
                break
            time.sleep(0.1)
        return round(time.monotonic() - t0, 2)

    def summary(self) -> dict[str, dict[str, int]]:
        answered, written = self.answered(), self.refresh()
        return {name: {"answered": answered[name], "records": written[name]} for name in answered}


# ----------------------------------------------------------------------------- the callgrind part
FLUSH_WAIT = 2.5  # idle seconds after each side's requests (capture writes every 1 s in that server)


@dataclass
class Count:
    threads: dict[int, int] = field(default_factory=dict)  # thread number -> instructions

    def per_request(self, requests: int, background: set[int]) -> dict[str, float]:
        """Thread 1 is the event loop; `background` the threads the plain side's window already had (the
        store's threads: time-based work, not per request); any other thread is the capture writer's."""
        loop = self.threads.get(1, 0)
        quiet = sum(v for k, v in self.threads.items() if k in background)
        writer = sum(v for k, v in self.threads.items() if k != 1 and k not in background)
        return {
            "front door": (loop + writer) / requests,
            "event loop": loop / requests,
            "capture writer": writer / requests,
            "background threads": quiet / requests,
        }


def instructions(a: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Front-door instructions per request of each endpoint, one valgrind'd server for all of them."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt install valgrind)")
    out = work / "callgrind.out"
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}",
    ]
    # no health checks, metric history writes or alarm evaluations in the window (timers, whatever the
    # traffic; as bench/instructions.py); capture written every second, so each side's window (the requests
    # and then FLUSH_WAIT idle seconds, the same for every side) holds the writing of its records
    env = {
        "PYTHONMALLOC": "malloc",
        "MOORAGE_HEALTH_INTERVAL_SECONDS": "3600",
        "MOORAGE_METRIC_RESOLUTION_SECONDS": "3600",
        "MOORAGE_ALARM_EVALUATION_SECONDS": "3600",
        "MOORAGE_CAPTURE_FLUSH_SECONDS": "1",
    }
    local_dir = work / "captured-callgrind"
    log("starting a server under callgrind (a minute or more)")
    server = start_server(work, "callgrind", valgrind, env)
    counts: dict[str, dict[str, float]] = {}
    background: set[int] = set()
    try:
        deploy(server, work, 1, local_dir)
        body = json.dumps({"user_id": "u42", "k": 10})
        for name in ("plain", "capture-s3", "capture-local", "shadow"):
            send_serially(server.port, name, body, 100)  # every code path has run once
            time.sleep(FLUSH_WAIT)
            before = set(work.glob(out.name + ".*"))
            _callgrind(server, "-i", "on")
            send_serially(server.port, name, body, a.instructions)
            time.sleep(FLUSH_WAIT)
            _callgrind(server, "-i", "off")
            _callgrind(server, "-d")
            count = _count(_new_dumps(work, out.name, before))
            if name == "plain":
                background = set(count.threads) - {1}
            counts[name] = count.per_request(a.instructions, background)
            log(f"  {name}: {counts[name]['front door']:,.0f} instructions/request")
    finally:
        server.tree.stop(grace=60)
    return {"requests": a.instructions, "flush_wait_s": FLUSH_WAIT, "per_request": counts}


def send_serially(port: int, endpoint: str, body: str, count: int) -> None:
    """`count` requests one after the other over one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(count):
            conn.request("POST", f"/endpoints/{endpoint}/invocations", body=body, headers=run.JSON_HEADERS)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{endpoint} answered {response.status}")
    finally:
        conn.close()


def _callgrind(server: Server, *args: str) -> None:
    """callgrind_control, with the server's TMPDIR (where valgrind keeps its control pipes)."""
    env = {**os.environ, "TMPDIR": str(server.work)}
    done = subprocess.run(
        ["callgrind_control", *args, str(server.tree.pid)], env=env, capture_output=True, timeout=300
    )
    if done.returncode != 0 or b"Error" in done.stdout + done.stderr:
        raise RuntimeError(
            f"callgrind_control {' '.join(args)}: {(done.stdout + done.stderr).decode()[-500:]}"
        )


def _new_dumps(work: Path, stem: str, before: set[Path]) -> list[Path]:
    """The files of the dump just asked for (one per thread: ``<stem>.<part>-<thread>``), once they are
    all there and complete."""
    deadline = time.monotonic() + 120
    found: list[Path] = []
    while time.monotonic() < deadline:
        now = sorted(p for p in work.glob(stem + ".*") if p not in before)
        if now and now == found and all(_total(p) is not None for p in now):
            return now
        found = now
        time.sleep(1.0)
    raise TimeoutError(f"callgrind wrote no complete dump in {work} within 120 s")


def _total(path: Path) -> int | None:
    match = re.search(r"^totals:\s+(\d+)", path.read_text(errors="replace"), re.MULTILINE)
    return int(match.group(1)) if match else None


def _count(dumps: list[Path]) -> Count:
    """The instructions of each thread (``thread:`` in each file's header) in one dump."""
    count = Count()
    for path in dumps:
        thread = re.search(r"^thread:\s+(\d+)", path.read_text(errors="replace"), re.MULTILINE)
        number = int(thread.group(1)) if thread else 1
        count.threads[number] = count.threads.get(number, 0) + (_total(path) or 0)
    return count


# ----------------------------------------------------------------------------- report
def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _spread(values: list[float], fmt: str) -> str:
    """The median, and the range in brackets."""
    return f"{fmt.format(_median(values))} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _by_round(runs: list[dict[str, Any]], phase: str) -> dict[int, dict[str, dict[str, Any]]]:
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for r in runs:
        if r["phase"] == phase:
            out.setdefault(r["round"], {})[r["endpoint"]] = r
    return out


def _med(rs: list[dict[str, Any]], key: str, scale: float = 1.0) -> float:
    return _median([r[key] / scale for r in rs])


def _cpu(rs: list[dict[str, Any]], *roles: str) -> str:
    return " / ".join(f"{_median([r['cpu_us_per_req'][role] for r in rs]):.0f}" for role in roles)


def render(R: dict[str, Any], a: argparse.Namespace) -> str:
    lines: list[str] = []
    wall = R.get("wall")
    if wall:
        lines += _throughput_table(wall, a)
        for phase in ("latency", PINNED_PHASE):
            if any(r["phase"] == phase for r in wall["runs"]):
                lines += _latency_table(wall, phase)
        lines += _checks(wall)
    if R.get("instructions"):
        lines += _instructions_table(R["instructions"])
    return "\n".join(lines)


def _throughput_table(wall: dict[str, Any], a: argparse.Namespace) -> list[str]:
    rounds = _by_round(wall["runs"], "throughput")
    lines = [
        f"Throughput at c={a.conc}, {a.workers} worker(s) per variant, {len(rounds)} rounds of "
        f"{a.duration:g} s runs, capture written every {a.capture_flush:g} s. Medians; vs plain: median of "
        "the per-round ratios (range).",
        "",
        "| endpoint | req/s | vs plain | p50 / p99 / max ms "
        "| CPU µs/req: front door / workers / S3 store / capture process "
        "| front door, cores | errors | other load, cores | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in THROUGHPUT:
        rs = [rd[name] for rd in rounds.values() if name in rd]
        ratios = [
            rd[name]["rps"] / rd["plain"]["rps"] for rd in rounds.values() if name in rd and "plain" in rd
        ]
        ratio, target = "1", ""
        if name != "plain":
            ratio = _spread(ratios, "{:.2f}")
            target = f"≥ {TARGET_CAPTURE_RATIO:.2f} {_mark(_median(ratios) >= TARGET_CAPTURE_RATIO)}"
        lines.append(
            f"| {name} | {_med(rs, 'rps'):,.0f} | {ratio} "
            f"| {_med(rs, 'p50_us', 1000):.2f} / {_med(rs, 'p99_us', 1000):.2f} "
            f"/ {_med(rs, 'max_us', 1000):.0f} "
            f"| {_cpu(rs, 'front door', 'production workers', 'S3 store', 'capture process')} "
            f"| {_med(rs, 'front_door_cores'):.2f} | {sum(r['errors'] for r in rs)} "
            f"| {_med(rs, 'other_load_cores'):.2f} | {target} |"
        )
    return [*lines, ""]


def _latency_table(wall: dict[str, Any], phase: str) -> list[str]:
    rounds = _by_round(wall["runs"], phase)
    sides = [n for n in LATENCY if any(n in rd for rd in rounds.values())]
    where = (
        "the shadow's instance on one CPU, everything else (wrk included) on the other"
        if phase == PINNED_PHASE
        else "every process placed by the scheduler"
    )
    lines = [
        f"Caller latency at c=1, {where}, {len(rounds)} rounds. Medians; +plain: median of the per-round "
        "differences (range).",
        "",
        "| endpoint | p50 ms | p50 +plain, ms | p99 ms | p99 +plain, ms | max ms | req/s "
        "| CPU µs/req: front door / workers / shadow workers | other load, cores | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in sides:
        rs = [rd[name] for rd in rounds.values() if name in rd]
        pairs = [(rd[name], rd["plain"]) for rd in rounds.values() if name in rd and "plain" in rd]
        d50 = [(x["p50_us"] - p["p50_us"]) / 1000 for x, p in pairs]
        d99 = [(x["p99_us"] - p["p99_us"]) / 1000 for x, p in pairs]
        added50 = "0" if name == "plain" else _spread(d50, "{:+.3f}")
        added99 = "0" if name == "plain" else _spread(d99, "{:+.2f}")
        target = ""
        if name == "shadow":
            ok = _median(d50) <= TARGET_SHADOW_ADDED_P50_MS
            target = f"p50 ≤ +{TARGET_SHADOW_ADDED_P50_MS} ms {_mark(ok)}"
        lines.append(
            f"| {name} | {_med(rs, 'p50_us', 1000):.3f} | {added50} | {_med(rs, 'p99_us', 1000):.2f} "
            f"| {added99} | {_med(rs, 'max_us', 1000):.1f} | {_med(rs, 'rps'):,.0f} "
            f"| {_cpu(rs, 'front door', 'production workers', 'shadow workers')} "
            f"| {_med(rs, 'other_load_cores'):.2f} | {target} |"
        )
    return [*lines, ""]


def _checks(wall: dict[str, Any]) -> list[str]:
    lines: list[str] = [
        "- p50 and p99 are wrk's: after a run it adds, for each answer slower than the run's mean interval "
        "per connection, the samples a client sending at a steady rate would have seen meanwhile (its "
        "coordinated-omission correction), so a stall weighs as the requests it would hold up; max is the "
        "slowest single answer",
    ]
    lines += [
        f"- {name}: {c['answered']:,} requests answered, {c['records']:,} records written"
        for name, c in wall.get("captured", {}).items()
    ]
    shadow = [r for r in wall["runs"] if r["endpoint"] == "shadow"]
    for phase in sorted({r["phase"] for r in shadow}):
        rs = [r for r in shadow if r["phase"] == phase]
        copies = sum(r.get("shadow_copies_answered", 0) for r in rs)
        dropped = sum(r.get("shadow_copies_dropped", 0) for r in rs)
        requests = sum(r["requests"] for r in rs)
        lines.append(
            f"- shadow ({phase}): {requests:,} caller requests; the shadow answered {copies:,} copies, "
            f"{dropped:,} were dropped (its bound of copies in flight)"
        )
    seconds = ", ".join(f"{k} {v:.2f} s" for k, v in wall["in_service_s"].items())
    lines.append(f"- CreateEndpoint → InService: {seconds}")
    return [*lines, ""]


def _instructions_table(counted: dict[str, Any]) -> list[str]:
    counts = counted["per_request"]
    plain = counts["plain"]["front door"]
    lines = [
        f"Front-door instructions per request (callgrind, {counted['requests']} requests one at a time; "
        f"each window ends {counted['flush_wait_s']:g} s after the last request, so the capture writer's "
        "batches fall in it)",
        "",
        "| endpoint | front door / request | event loop | capture writer thread | vs plain "
        "| other threads (left out) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, c in counts.items():
        lines.append(
            f"| {name} | {c['front door']:,.0f} | {c['event loop']:,.0f} | {c['capture writer']:,.0f} "
            f"| {c['front door'] / plain:.3f} | {c['background threads']:,.0f} |"
        )
    return [*lines, ""]


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    ap.add_argument("--conc", type=int, default=16, help="concurrency of the throughput runs")
    ap.add_argument("--workers", type=int, default=1, help="SAGEMAKER_MODEL_SERVER_WORKERS of each variant")
    ap.add_argument(
        "--capture-flush",
        type=float,
        default=0.5,
        help="MOORAGE_CAPTURE_FLUSH_SECONDS of the server (default 0.5, so a run holds its own writes)",
    )
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="skip the pinned latency runs")
    ap.add_argument(
        "--quiet-wait", type=float, default=5.0, help="max seconds to wait for a quiet box per round"
    )
    ap.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count instructions per request (callgrind)",
    )
    ap.add_argument("--no-wall-clock", dest="wall", action="store_false", help="only the callgrind count")
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.workers < 1 or a.conc < 1:
        ap.error("--rounds, --workers and --conc must be at least 1")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    wrk = ensure_wrk()
    work = Path(tempfile.mkdtemp(prefix="msafe-", dir="/tmp"))  # short: instance sockets live below it
    R: dict[str, Any] = {
        "args": vars(a),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "cpus": os.cpu_count(),
    }
    try:
        with run.terminate_on_sigterm():
            if a.wall:
                R["wall"] = wall_clock(a, wrk, work)
            if a.instructions:
                R["instructions"] = instructions(a, work)
    finally:
        out = run.RESULTS / f"safe-deployment-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(R, indent=1))
        if os.environ.get("KEEP"):
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(render(R, a))
    print(f"\nraw results: {out.relative_to(run.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
