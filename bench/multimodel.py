"""Multi-model endpoints: 200 small models behind one endpoint under a skewed (Zipf) request mix, Moorage
against multi-model-server with the SageMaker inference toolkit, on the same models and the same memory
budget. Prints one markdown table.

1. Models (bench/mme_models.py): ``--models`` archives ``mNNN.tar.gz``, each an ``items.npy`` matrix
   (``--rows`` x ``--dim`` float32, seeded) and the same ``code/inference.py`` (bench/mme_inference.py),
   built once under ``~/.cache/moorage-bench/mme-models``; three more serve as memory probes only.
2. Requests: ``--requests`` draws from a Zipf mix (exponent ``--zipf``, seeded) over the models, sent in
   the same order to both servers by ``--concurrency`` closed loops, each stopped after ``--max-seconds``.
   Every request is timed by the client; a hit is a request whose model was already loaded.
3. Moorage: ``moorage serve`` with ``MOORAGE_MME_MEMORY_BYTES`` = the budget; a Model with ``Mode
   MultiModel`` and the ``file://`` directory as ``ModelDataUrl``, one instance; raw HTTP to
   ``/endpoints/<name>/invocations`` with ``X-Amzn-SageMaker-Target-Model``. The front door keeps the
   instance's cache header to itself, so hit or miss per request comes from the instance's log: a
   request is a miss when its model finished loading ("loaded <model>", wall clock) while it was under
   way. /metrics' ModelCacheHit is reported next to it as a check; loads are its ModelLoadingTime count.
4. multi-model-server (bench/mms_platform.py, venv made on first run under
   ``~/.cache/moorage-bench/mms``): the harness plays SageMaker's platform, loading on demand and
   unloading the least recently used model. It evicts by count, so the count is the budget divided by
   the memory one loaded model costs there (measured: PSS of the server's processes before and after
   loading the probes); ``--mms-capacity N`` adds a run that keeps N models instead (``moorage``: as many
   as Moorage held at the end of its run).

Needs Linux (/proc), Java for multi-model-server, and root (the toolkit writes /etc/sagemaker-mms.properties;
restored afterwards). The box's other load is measured and reported (``foreign cores``).

Usage: python bench/multimodel.py [--requests 2000] [--concurrency 8] [--budget-mb 1024]
                                  [--servers moorage,mms] [--mms-capacity N|moorage] [--max-seconds 240]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH.parent / "examples" / "recommender"), str(BENCH)]

import deploy  # noqa: E402  (examples/recommender/deploy.py)
import mme_models  # noqa: E402
import run  # noqa: E402  (bench/run.py: ports, clients, waits)
from mme_load import Invoke, Sample, classify_by_loads, closed_loop, summarize, zipf_sequence  # noqa: E402
from mms_platform import JSON, MmsServer, Platform, free_port  # noqa: E402
from procinfo import HZ, Launched, memory_kb, system_busy_ticks, wait_quiet  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from rawclient import Connection  # noqa: E402

ENDPOINT = "mme"
PROBES = 3
_LOADED = re.compile(r"^(\S+Z) INFO .*moorage\.serving\.multimodel: loaded (\S+) \(")


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), "[multimodel]", *parts, file=sys.stderr, flush=True)


def mme_metrics(port: int) -> dict[str, float]:
    """The endpoint's multi-model samples in /metrics (``*model_load*``, ``*model_cache*``, ...), summed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            mine = sample.labels.get("endpoint") == ENDPOINT and "le" not in sample.labels  # no buckets
            if mine and "model" in sample.name:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def _metric(values: dict[str, float], *words: str) -> float | None:
    found = [v for k, v in values.items() if all(w in k for w in words)]
    return found[0] if found else None


class CpuWindow:
    """Cores other workloads used while a run went on: the system's busy time minus what this process's
    tree (client, Moorage) and the processes of ``session`` (multi-model-server: its launcher orphans the
    frontend, and a worker's forked child outlives its parent) used.

    Processes come and go with the models, so a thread samples them every 0.2 s. A process that is gone
    at the end counts through its parent's cutime when an own process that is still there reaped it
    (directly or through reaped parents); otherwise (orphans) with the ticks it last showed.
    """

    def __init__(self, session: int | None) -> None:
        self.session = session
        # (pid, start time) -> [ppid, own ticks, reaped children's ticks], first and last seen
        self.first: dict[tuple[int, int], tuple[int, int]] = {}
        self.last: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.alive: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._sample(initial=True)
        self.t0, self.b0 = time.monotonic(), system_busy_ticks()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self, initial: bool = False) -> None:
        stats: dict[int, tuple[int, int, int, int, int]] = {}  # pid -> ppid, session, start, self, children
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            r = text[text.rindex(")") + 2 :].split()
            stats[int(entry)] = (
                int(r[1]), int(r[3]), int(r[19]), int(r[11]) + int(r[12]), int(r[13]) + int(r[14])
            )  # fmt: skip
        own = {os.getpid()}
        grew = True
        while grew:
            more = {pid for pid, st in stats.items() if st[0] in own or st[1] == self.session} - own
            own |= more
            grew = bool(more)
        self.alive = set()
        for pid in own:
            ppid, _, start, ticks, children = stats[pid]
            key = (pid, start)
            self.first.setdefault(key, (ticks, children) if initial else (0, 0))
            self.last[key] = (ppid, ticks, children)
            self.alive.add(key)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def own_ticks(self) -> int:
        alive_pids = {pid for pid, _ in self.alive}
        parent = {pid: self.last[key][0] for key in self.last for pid in [key[0]]}
        total = 0
        for key, (_, ticks, children) in self.last.items():
            first_ticks, first_children = self.first[key]
            if key in self.alive:
                total += ticks - first_ticks + children - first_children
                continue
            ancestor, hops = parent.get(key[0], 1), 0
            while ancestor not in alive_pids and ancestor in parent and hops < 64:
                ancestor, hops = parent[ancestor], hops + 1
            if ancestor not in alive_pids:  # nobody of ours reaped it: what it last showed
                total += ticks - first_ticks
        return total

    def foreign_cores(self) -> float:
        self._stop.set()
        self._thread.join()
        self._sample()
        busy = system_busy_ticks() - self.b0
        return max(0.0, (busy - self.own_ticks()) / HZ / (time.monotonic() - self.t0))


def _pss_kb(pids: list[int]) -> int:
    return sum(memory_kb(pid)[1] for pid in pids)


# ---- Moorage ---------------------------------------------------------------------------------------


def moorage(a: argparse.Namespace, prefix: Path, sequence: list[str], work: Path) -> dict[str, Any]:
    port = run.free_port()
    env = {**os.environ, "MOORAGE_MME_MEMORY_BYTES": str(a.budget_mb * 1024 * 1024), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "moorage", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--state-dir", str(work / "state"), "--no-s3"]
    server = Launched.start("moorage", cmd, env, work / "moorage.log", run.REPO)
    try:
        sm, _ = run.sagemaker_clients(port)
        run.wait_until("moorage serve", lambda: sm.list_endpoints() is not None, 60, 0.1)
        sm.create_model(
            ModelName=ENDPOINT,
            PrimaryContainer={"Mode": "MultiModel", "ModelDataUrl": prefix.as_uri() + "/"},
        )
        deploy.create_endpoint_config(sm, ENDPOINT, ENDPOINT)
        in_service = run.time_in_service(sm, ENDPOINT, ENDPOINT, timeout=300)["in_service_s"]
        path = f"/endpoints/{ENDPOINT}/invocations"

        async def invoke(conn: Connection, name: str, body: bytes) -> tuple[int, bool]:
            headers = {**JSON, "X-Amzn-SageMaker-Target-Model": f"{name}.tar.gz"}
            answer = await conn.request("POST", path, body, headers)
            return answer.status, False  # classified afterwards, from the log

        def classify(samples: list[Sample]) -> list[Sample]:
            time.sleep(0.5)  # the last lines reach the log
            return classify_by_loads(samples, load_times(work / "state" / "logs" / f"{ENDPOINT}.log"))

        async def probe() -> float:
            before = _pss_kb(server.refresh())
            conn = Connection("127.0.0.1", port)
            for i in range(PROBES):
                headers = {
                    **JSON,
                    "X-Amzn-SageMaker-Target-Model": f"{mme_models.model_name(a.models + i)}.tar.gz",
                }
                answer = await conn.request("POST", path, b'{"seed": 1}', headers)
                if answer.status != 200:
                    raise RuntimeError(f"probe answered {answer.status}: {answer.body[:500]!r}; see {work}")
            await conn.close()
            time.sleep(0.5)
            return (_pss_kb(server.refresh()) - before) / PROBES / 1024

        base_kb = _pss_kb(server.refresh())
        per_model_mb = asyncio.run(probe())
        log(f"Moorage: InService in {in_service:.2f} s; one loaded model costs {per_model_mb:.1f} MB (PSS)")
        before = mme_metrics(port)
        result = measure(
            a, "moorage", lambda: Connection("127.0.0.1", port), invoke, sequence, None, classify
        )
        after = mme_metrics(port)
        hits = _metric(after, "cache_hits") or 0.0
        lookups = _metric(after, "cache_lookups") or 0.0
        hits -= _metric(before, "cache_hits") or 0.0
        lookups -= _metric(before, "cache_lookups") or 0.0
        result["metrics_hit_rate"] = hits / lookups if lookups else None
        loads_before = _metric(before, "loading_time", "_count")
        loads_after = _metric(after, "loading_time", "_count")
        if loads_before is not None and loads_after is not None:
            result.update(summarize_loads(result, int(loads_after - loads_before), "ModelLoadingTime count"))
        result["models_in_memory"] = _metric(after, "loaded_model_count")
        result["per_model_mb"] = per_model_mb
        result["models_mb_end"] = (_pss_kb(server.refresh()) - base_kb) / 1024
        result["metrics_after"] = after
        result["label"] = f"Moorage, {a.budget_mb} MB budget"
        return result
    finally:
        server.stop(grace=30)


def load_times(log_path: Path) -> dict[str, list[float]]:
    """Model name -> the wall-clock times the instance logged it loaded."""
    out: dict[str, list[float]] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        if m := _LOADED.match(line):
            when = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
            out.setdefault(m.group(2).removesuffix(".tar.gz"), []).append(when)
    return out


def summarize_loads(result: dict[str, Any], loads: int, source: str) -> dict[str, Any]:
    return {"loads": loads, "loads_per_s": loads / result["elapsed_s"], "loads_source": source}


def measure(
    a: argparse.Namespace,
    name: str,
    connect: Callable[[], Connection],
    invoke: Invoke,
    sequence: list[str],
    session: int | None,
    classify: Callable[[list[Sample]], list[Sample]] | None = None,
) -> dict[str, Any]:
    waited, foreign_before = wait_quiet(0.3, 30, [os.getpid(), *([session] if session else [])])
    window = CpuWindow(session)
    samples, elapsed = asyncio.run(closed_loop(connect, invoke, sequence, a.concurrency, a.max_seconds))
    foreign = window.foreign_cores()
    if classify is not None:
        samples = classify(samples)
    result = summarize(samples, elapsed, loads=0)
    result["foreign_cores"] = foreign
    result["loads_source"] = "requests answered as misses"
    result["loads"] = sum(1 for s in samples if not s.hit and s.status == 200)
    result["loads_per_s"] = result["loads"] / elapsed
    log(
        f"{name}: {result['ok']} answers in {elapsed:.1f} s, hit rate {result['hit_rate']:.1%}, "
        f"foreign CPU {result['foreign_cores']:.2f} cores (waited {waited} s for {foreign_before})"
    )
    return result


# ---- multi-model-server ----------------------------------------------------------------------------


def mms(
    a: argparse.Namespace, prefix: Path, sequence: list[str], work: Path, capacity: int | None
) -> dict[str, Any]:
    port = free_port()
    server = MmsServer(work, port)
    try:
        run.wait_until(
            "multi-model-server", lambda: run.http_request(port, "GET", "/ping")[0] == 200, 120, 0.2
        )
        unpacked = work / "models"
        unpacked.mkdir(exist_ok=True)

        async def probe() -> float:
            platform = Platform(prefix, unpacked, capacity=PROBES)
            conn = Connection("127.0.0.1", port)
            before = server.pss_kb()
            for i in range(PROBES):
                status, _ = await platform.invoke(conn, mme_models.model_name(a.models + i), b'{"seed": 1}')
                if status != 200:
                    raise RuntimeError(f"probe answered {status}: {platform.errors}; see {work}/mms.log")
            time.sleep(0.5)
            cost = (server.pss_kb() - before) / PROBES / 1024
            for name in list(platform.loaded):
                await conn.request("DELETE", f"/models/{name}")
            await conn.close()
            return cost

        base_kb = server.pss_kb()
        per_model_mb = asyncio.run(probe())
        fits = max(1, int(a.budget_mb // per_model_mb))
        kept = capacity or fits
        log(
            f"multi-model-server: one loaded model costs {per_model_mb:.1f} MB (PSS): {fits} fit in "
            f"{a.budget_mb} MB; keeping {kept}"
        )
        platform = Platform(prefix, unpacked, kept)
        result = measure(
            a,
            "multi-model-server",
            lambda: Connection("127.0.0.1", port),
            platform.invoke,
            sequence,
            server.proc.pid,  # its session
        )
        result.update(summarize_loads(result, platform.loads, "POST /models the harness made"))
        result["unloads"] = platform.unloads
        result["platform_errors"] = platform.errors[:5]
        result["models_in_memory"] = kept
        result["per_model_mb"] = per_model_mb
        result["models_mb_end"] = (server.pss_kb() - base_kb) / 1024
        budget = f"{a.budget_mb} MB budget"
        if capacity is not None:
            budget = f"{kept} models ({kept * per_model_mb:.0f} MB)"
        result["label"] = f"multi-model-server + toolkit, {budget}"
        return result
    finally:
        server.stop()


# ---- output ----------------------------------------------------------------------------------------


def _f(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def render(results: list[dict[str, Any]], a: argparse.Namespace) -> str:
    lines = [
        f"Multi-model endpoint, {a.models} models ({a.rows}x{a.dim} float32 each, "
        f"{a.rows * a.dim * 4 / 2**20:.1f} MB), Zipf s={a.zipf} (seed {a.seed}), {a.requests} requests "
        f"at most, {a.max_seconds:.0f} s at most, {a.concurrency} closed loops, {os.cpu_count()} CPUs",
        "",
        "| server, memory | models in memory | their PSS, MB | requests | hit rate | hit p50 / p99 ms "
        "| miss p50 / p99 ms | loads/s | req/s | errors | foreign cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {_f(r.get('models_in_memory'), '{:.0f}')} | {r['models_mb_end']:.0f} "
            f"| {r['ok']} | {r['hit_rate']:.1%} | {_f(r['hit_p50_ms'])} / {_f(r['hit_p99_ms'])} "
            f"| {_f(r['miss_p50_ms'], '{:.0f}')} / {_f(r['miss_p99_ms'], '{:.0f}')} | {r['loads_per_s']:.1f} "
            f"| {r['rps']:.0f} | {r['errors']} | {r['foreign_cores']:.2f} |"
        )
    lines.append("")
    lines.append(
        "Models in memory at the end; their PSS: the server's processes' PSS at the end minus before any "
        "model was loaded. One more model costs (PSS before and after loading 3): "
        + ", ".join(f"{r['label'].split(',')[0]} {r['per_model_mb']:.1f} MB" for r in results[:2])
    )
    for r in results:
        if r.get("metrics_hit_rate") is not None:
            lines.append(f"\n{r['label']}: ModelCacheHit in /metrics {r['metrics_hit_rate']:.1%}")
    return "\n".join(lines)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="multi-model-server runs from a venv made on the first run at ~/.cache/moorage-bench/mms "
        "(pip install multi-model-server sagemaker-inference numpy); it needs Java.",
    )
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--rows", type=int, default=8192, help="items per model (--dim float32 each)")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=240.0, help="per server run")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--budget-mb", type=int, default=1024, help="memory for loaded models, both servers")
    ap.add_argument("--servers", default="moorage,mms")
    ap.add_argument(
        "--mms-capacity",
        action="append",
        default=[],
        help="also run MMS keeping N models ('moorage': the count Moorage held)",
    )
    ap.add_argument("--keep", metavar="DIR", help="work here (server logs, state) and keep it afterwards")
    a = ap.parse_args(argv)
    # stop the servers on SIGTERM too (and on SIGINT where a shell started this in the background)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    servers = {s.strip() for s in a.servers.split(",")}
    prefix = mme_models.build(a.models + PROBES, a.rows, a.dim)
    names = [mme_models.model_name(i) for i in range(a.models)]
    sequence = zipf_sequence(names, a.zipf, a.requests, a.seed)
    log(f"{len(set(sequence))} distinct models in {a.requests} requests; archives in {prefix}")
    results = []
    with tempfile.TemporaryDirectory(prefix="moorage-mme-") as tmp:
        work = Path(a.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "moorage" in servers:
            (work / "moorage").mkdir()
            results.append(moorage(a, prefix, sequence, work / "moorage"))
        if "mms" in servers:
            held = next((r["models_in_memory"] for r in results if r.get("models_in_memory")), None)
            for i, spec in enumerate([None, *a.mms_capacity]):
                if spec == "moorage" and held is None:
                    log("--mms-capacity moorage: no Moorage run to take the count from; skipped")
                    continue
                capacity = None if spec is None else int(spec) if spec != "moorage" else int(held or 0)
                (work / f"mms{i}").mkdir(exist_ok=True)
                results.append(mms(a, prefix, sequence, work / f"mms{i}", capacity))
    print(render(results, a))
    out = BENCH / "results" / f"multimodel-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(a), "results": results}, indent=2, default=str))
    print(f"\nwritten to {out.relative_to(BENCH.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
