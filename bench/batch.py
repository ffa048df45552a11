"""Batch transform throughput: records per second for the recommender over JSON Lines, against calling
its handlers in-process on the same cores.

1. Packs the 5k recommender with the batch variant of its handlers (examples/recommender/batch_code:
   an input_fn that takes JSON Lines) and writes ``--records`` requests ``{"user_id", "k"}`` as JSON
   Lines, split over ``--objects`` input objects.
2. **Moorage**: ``moorage serve`` (embedded S3 store, temporary state dir); the objects go to S3 with
   boto3, then CreateTransformJob with SplitType Line, BatchStrategy MultiRecord, MaxPayloadInMB
   ``--payload-mb``, one instance with ``--workers`` workers. Timed from the job's first request to
   its end (the job log's lines; instance start-up is reported apart) and from CreateTransformJob to
   Completed.
3. **In-process**: ``--workers`` processes, each loads model_fn once, then the same request bodies
   (the same records packed the same way) go through input_fn -> predict_fn -> output_fn; run before
   and after the job, the faster of the two is the baseline.

Prints a markdown table; the target is Moorage >= 0.7x in-process records/s.

Usage: python bench/batch.py [--records 100000] [--objects 20] [--payload-mb 1] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "recommender"
sys.path[:0] = [str(EXAMPLE), str(REPO / "bench")]

import pack  # noqa: E402  (examples/recommender/pack.py)
from run import free_port  # noqa: E402  (bench/run.py)

TARGET = 0.7
USERS = 10000
_STAMP = re.compile(r"^(\S+Z) \[moorage\] (.*)$")


def log(*parts: object) -> None:
    print("[batch]", *parts, file=sys.stderr, flush=True)


def build_model(work: Path) -> tuple[Path, Path]:
    """The archive with the batch handlers as code/inference.py, and the data directory."""
    pack.build()  # generates the data if missing
    data_dir = pack.BUILD_DIR / f"data-{pack.data_name()}"
    code = work / "code"
    code.mkdir()
    shutil.copy(EXAMPLE / "code" / "inference.py", code / "recommender.py")
    shutil.copy(EXAMPLE / "batch_code" / "inference.py", code / "inference.py")
    return pack.pack(data_dir, work / "model.tar.gz", code), code


def make_inputs(records: int, objects: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    lines = [json.dumps({"user_id": f"u{rng.randrange(USERS)}", "k": 10}) + "\n" for _ in range(records)]
    per = -(-records // objects)
    return ["".join(lines[i : i + per]).encode() for i in range(0, records, per)]


def bodies(objects: list[bytes], payload_mb: int) -> list[bytes]:
    """The request bodies MultiRecord sends: whole lines packed under the payload limit, per object."""
    limit = payload_mb * 1024 * 1024
    out: list[bytes] = []
    for data in objects:
        batch: list[bytes] = []
        size = 0
        for line in data.splitlines(keepends=True):
            if batch and size + len(line) > limit:
                out.append(b"".join(batch))
                batch, size = [], 0
            batch.append(line)
            size += len(line)
        if batch:
            out.append(b"".join(batch))
    return out


# ---- in-process ---------------------------------------------------------------------------------

_MODEL: Any = None
_HANDLERS: Any = None


def _load(code: str, model_dir: str) -> None:
    global _MODEL, _HANDLERS
    sys.path.insert(0, code)
    import inference  # the batch variant, as the instance imports it

    _HANDLERS = inference
    _MODEL = inference.model_fn(model_dir)


def _transform(body: bytes) -> int:
    h = _HANDLERS
    answer, _ = h.output_fn(h.predict_fn(h.input_fn(body, "application/jsonlines"), _MODEL), None)
    return answer.count("\n") + 1


def in_process(code: Path, data_dir: Path, work: list[bytes], workers: int) -> float:
    """Seconds to transform every body with `workers` processes (model loading not counted)."""
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_load, initargs=(str(code), str(data_dir))) as pool:
        pool.map(_transform, work[:workers])  # warm: every process has loaded the model
        begun = time.perf_counter()
        done = sum(pool.map(_transform, work, chunksize=1))
        seconds = time.perf_counter() - begun
    assert done == sum(body.count(b"\n") for body in work), done
    return seconds


# ---- Moorage -------------------------------------------------------------------------------------


def start_server(state: Path, port: int) -> subprocess.Popen[bytes]:
    out = open(state / "server.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "moorage", "serve", "--port", str(port), "--state-dir", str(state)],
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the server did not start; see {state / 'server.log'}")


def client(port: int, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}),
    )


def moorage(state: Path, archive: Path, objects: list[bytes], a: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    server = start_server(state, port)
    try:
        sm, s3 = client(port, "sagemaker"), client(port, "s3")
        s3.create_bucket(Bucket="bench")
        for i, data in enumerate(objects):
            s3.put_object(Bucket="bench", Key=f"in/part-{i:04d}.jsonl", Body=data)
        sm.create_model(
            ModelName="recommender-batch",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
            PrimaryContainer={
                "Image": "recommender",
                "ModelDataUrl": archive.as_uri(),
                "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": str(a.workers), "OMP_NUM_THREADS": "1"},
            },
        )
        begun = time.perf_counter()
        sm.create_transform_job(
            TransformJobName="bench",
            ModelName="recommender-batch",
            BatchStrategy="MultiRecord",
            MaxPayloadInMB=a.payload_mb,
            MaxConcurrentTransforms=a.workers,
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bench/in/"}},
                "ContentType": "application/jsonlines",
                "SplitType": "Line",
            },
            TransformOutput={
                "S3OutputPath": "s3://bench/out/",
                "Accept": "application/jsonlines",
                "AssembleWith": "Line",
            },
            TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
        )
        while (status := sm.describe_transform_job(TransformJobName="bench")["TransformJobStatus"]) in (
            "InProgress",
            "Stopping",
        ):
            time.sleep(0.05)
        total = time.perf_counter() - begun
        if status != "Completed":
            reason = sm.describe_transform_job(TransformJobName="bench").get("FailureReason")
            raise RuntimeError(f"the job ended {status}: {reason}")
        lines = sum(
            s3.get_object(Bucket="bench", Key=f"out/part-{i:04d}.jsonl.out")["Body"].read().count(b"\n")
            for i in range(len(objects))
        )
        assert lines == a.records, lines
        startup, running = _phases(state / "logs" / "transform-job.bench.log")
        return {"total_s": total, "startup_s": startup, "running_s": running}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def _phases(path: Path) -> tuple[float, float]:
    """(instance start-up, first request to the last output written) from the job log's timestamps."""
    stamps: dict[str, float] = {}
    for line in path.read_text().splitlines():
        match = _STAMP.match(line)
        if not match:
            continue
        when = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        text = match.group(2)
        for key, marker in (("start", "starts."), ("run", "Running with"), ("end", "Transformed ")):
            if marker in text and key not in stamps:
                stamps[key] = when
    return stamps["run"] - stamps["start"], stamps["end"] - stamps["run"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--objects", type=int, default=20)
    ap.add_argument("--payload-mb", type=int, default=1)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"  # the in-process workers, like the instance's
    with tempfile.TemporaryDirectory(prefix="moorage-batch-") as tmp:
        work = Path(tmp)
        archive, code = build_model(work)
        data_dir = pack.BUILD_DIR / f"data-{pack.data_name()}"
        objects = make_inputs(a.records, a.objects)
        requests = bodies(objects, a.payload_mb)
        log(f"{a.records} records in {len(objects)} objects, {len(requests)} requests, {a.workers} workers")
        # in-process before and after the job, the faster one counts: the box is shared, and a
        # baseline slowed by someone else's load would flatter the ratio
        before = in_process(code, data_dir, requests, a.workers)
        state = work / "state"
        state.mkdir()
        served = moorage(state, archive, objects, a)
        after = in_process(code, data_dir, requests, a.workers)
        local = min(before, after)
        log(f"in-process: {before:.2f} s and {after:.2f} s; moorage: {served}")
    rate_local = a.records / local
    rate_job = a.records / served["running_s"]
    rate_total = a.records / served["total_s"]
    print(
        f"Batch transform, 5k recommender, {a.records} records (JSON Lines, SplitType Line, MultiRecord, "
        f"MaxPayloadInMB {a.payload_mb}), {a.objects} objects, {a.workers} workers, {os.cpu_count()} CPUs\n"
    )
    print("| run | seconds | records/s | vs in-process |")
    print("|---|---:|---:|---:|")
    print(f"| in-process handlers ({a.workers} processes) | {local:.2f} | {rate_local:,.0f} | 1.00x |")
    ok = "meets" if rate_job / rate_local >= TARGET else "misses"
    print(
        f"| Moorage job, first request to end | {served['running_s']:.2f} | {rate_job:,.0f} | "
        f"{rate_job / rate_local:.2f}x ({ok} the {TARGET}x target) |"
    )
    print(
        f"| Moorage job, CreateTransformJob to Completed | {served['total_s']:.2f} | {rate_total:,.0f} | "
        f"{rate_total / rate_local:.2f}x |"
    )
    print(f"\nInstance start-up (model download, unpack, model_fn): {served['startup_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
