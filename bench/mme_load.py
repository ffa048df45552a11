"""The multi-model benchmark's load: a seeded Zipf request mix over the models, driven closed-loop by C
tasks, each on its own keep-alive connection; per request its latency and whether its model was
already loaded (a hit) or had to be loaded first (a miss).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rawclient import Connection


@dataclass(frozen=True)
class Sample:
    model: str
    seconds: float
    status: int
    hit: bool
    wall_start: float  # time.time() when it was sent, to line it up with a server's log


# one request: (its connection, the model's name, the body) -> (HTTP status, was the model loaded)
Invoke = Callable[[Connection, str, bytes], Awaitable[tuple[int, bool]]]


def zipf_sequence(names: Sequence[str], s: float, count: int, seed: int) -> list[str]:
    """``count`` draws from ``names`` with P(rank r) ~ 1 / r**s; the ranks are a seeded shuffle of names."""
    rng = random.Random(seed)
    ranked = list(names)
    rng.shuffle(ranked)
    weights = [1 / (r**s) for r in range(1, len(ranked) + 1)]
    return rng.choices(ranked, weights=weights, k=count)


def body(i: int) -> bytes:
    return json.dumps({"seed": i, "k": 10}).encode()


async def closed_loop(
    connect: Callable[[], Connection],
    invoke: Invoke,
    sequence: Sequence[str],
    concurrency: int,
    max_seconds: float,
) -> tuple[list[Sample], float]:
    """Send ``sequence`` in order from ``concurrency`` loops until it is done or ``max_seconds`` passed."""
    samples: list[Sample] = []
    position = 0
    begun = time.perf_counter()
    deadline = begun + max_seconds

    async def loop() -> None:
        nonlocal position
        conn = connect()
        try:
            while position < len(sequence) and time.perf_counter() < deadline:
                i, position = position, position + 1
                started, wall = time.perf_counter(), time.time()
                try:
                    status, hit = await invoke(conn, sequence[i], body(i))
                except (TimeoutError, OSError, asyncio.IncompleteReadError):
                    await conn.close()
                    status, hit = 0, False
                samples.append(Sample(sequence[i], time.perf_counter() - started, status, hit, wall))
        finally:
            await conn.close()

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return samples, time.perf_counter() - begun


def classify_by_loads(
    samples: list[Sample], loads: dict[str, list[float]], slack: float = 0.002
) -> list[Sample]:
    """Hit or miss from the server's own load events (wall-clock times at which each model finished
    loading): a request whose model finished loading while it was under way waited for that load."""
    out = []
    for s in samples:
        end = s.wall_start + s.seconds
        missed = any(s.wall_start - slack <= t <= end for t in loads.get(s.model, ()))
        out.append(dataclasses.replace(s, hit=not missed))
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(samples: list[Sample], elapsed: float, loads: int) -> dict[str, Any]:
    ok = [s for s in samples if s.status == 200]
    hits = [s.seconds for s in ok if s.hit]
    misses = [s.seconds for s in ok if not s.hit]
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": len(samples) - len(ok),
        "error_statuses": sorted({s.status for s in samples if s.status != 200}),
        "elapsed_s": elapsed,
        "hit_rate": len(hits) / len(ok) if ok else 0.0,
        "hit_p50_ms": _ms(_pct(hits, 0.5)),
        "hit_p99_ms": _ms(_pct(hits, 0.99)),
        "miss_p50_ms": _ms(_pct(misses, 0.5)),
        "miss_p99_ms": _ms(_pct(misses, 0.99)),
        "all_p50_ms": _ms(_pct([s.seconds for s in ok], 0.5)),
        "mean_ms": _ms(statistics.fmean(s.seconds for s in ok)) if ok else None,
        "loads": loads,
        "loads_per_s": loads / elapsed if elapsed else 0.0,
        "rps": len(ok) / elapsed if elapsed else 0.0,
        "distinct_models": len({s.model for s in samples}),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
