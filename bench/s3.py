"""S3 through the port against S3 straight to the store: upload and download MB/s.

Starts one SeaweedFS (the same ``weed mini`` the tests use) and one ``moorage serve --s3-endpoint``
in front of it, then moves the same objects with boto3 both ways — straight to the store, and
through Moorage's pass-through — alternating the order each round, on one box. Single PUT/GET of
``--size`` MiB objects and a multipart upload/download (8 MiB parts) of the same size.

Usage: python bench/s3.py [--size 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

import boto3  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

from tests.support.moorage_server import moorage_server  # noqa: E402
from tests.support.seaweed import seaweed_s3  # noqa: E402

PARTS = TransferConfig(
    multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024, max_concurrency=4
)


def _client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
    )


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _round(client: Any, bucket: str, data: bytes, source: Path, target: Path) -> dict[str, float]:
    mib = len(data) / 1024 / 1024
    return {
        "PUT": mib / _timed(lambda: client.put_object(Bucket=bucket, Key="single", Body=data)),
        "GET": mib / _timed(lambda: client.get_object(Bucket=bucket, Key="single")["Body"].read()),
        "multipart upload": mib
        / _timed(lambda: client.upload_file(str(source), bucket, "multi", Config=PARTS)),
        "multipart download": mib
        / _timed(lambda: client.download_file(bucket, "multi", str(target), Config=PARTS)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="object size in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = os.urandom(args.size * 1024 * 1024)
    results: dict[str, dict[str, list[float]]] = {"direct": {}, "through Moorage": {}}
    with tempfile.TemporaryDirectory() as tmp, seaweed_s3() as store:
        source, target = Path(tmp) / "source.bin", Path(tmp) / "target.bin"
        source.write_bytes(data)
        with moorage_server(Path(tmp) / "state", args=["--s3-endpoint", store.endpoint_url]) as server:
            clients = {"direct": _client(store.endpoint_url), "through Moorage": _client(server.url)}
            bucket = store.create_bucket("bench")
            for number in range(args.rounds):
                order = list(clients) if number % 2 == 0 else list(reversed(clients))
                for side in order:
                    for name, value in _round(clients[side], bucket, data, source, target).items():
                        results[side].setdefault(name, []).append(value)
    print(f"\nS3 throughput, {args.size} MiB objects, median of {args.rounds} rounds (MB/s = MiB/s)\n")
    print(f"| {'operation':<20} | {'direct':>8} | {'through Moorage':>15} | {'ratio':>6} |")
    print(f"|{'-' * 22}|{'-' * 10}|{'-' * 17}|{'-' * 8}|")
    for name in results["direct"]:
        direct = statistics.median(results["direct"][name])
        through = statistics.median(results["through Moorage"][name])
        print(f"| {name:<20} | {direct:>8.0f} | {through:>15.0f} | {through / direct:>6.2f} |")


if __name__ == "__main__":
    main()
