"""The benchmark's parts that can be checked without servers: wrk output parsing, argument
parsing, the deterministic artifact, and the bare ASGI app driven in-process."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "recommender"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


loadgen = _load("bench_loadgen", REPO / "bench" / "loadgen.py")
pack = _load("recommender_pack", EXAMPLE / "pack.py")
bare_app = _load("bench_bare_app", REPO / "bench" / "bare_app.py")

WRK_STDOUT = """Running 3s test @ http://127.0.0.1:1/invocations
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.40ms  600.00us  10.00ms   90.00%
  13950 requests in 3.00s, 6.37MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   4650.00
Transfer/sec:      2.12MB
{"requests":13950,"duration_s":3.000,"rps":4650.0,"bytes":6680000,"p50_us":1400,"p90_us":2000,\
"p99_us":8100,"max_us":10000,"mean_us":1500.0,"err_connect":0,"err_read":1,"err_write":0,\
"err_status":12,"err_timeout":2}
"""


def test_parse_wrk_output() -> None:
    r = loadgen.parse_wrk_output(WRK_STDOUT)
    assert r["rps"] == 4650.0 and r["p50_us"] == 1400 and r["p99_us"] == 8100
    assert r["non_2xx"] == 12
    assert r["errors"] == 12 + 1 + 2


def test_parse_wrk_output_without_result_line() -> None:
    with pytest.raises(ValueError, match="no result line"):
        loadgen.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_threads_for() -> None:
    assert [loadgen.threads_for(c) for c in (1, 8, 32)] == [1, 1, 2]


def test_pack_is_deterministic(tmp_path: Path) -> None:
    a = pack.build(users=30, movies=40, dim=4, seed=1, build_dir=tmp_path / "a")
    b = pack.build(users=30, movies=40, dim=4, seed=1, build_dir=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    import tarfile

    with tarfile.open(a) as tar:
        names = tar.getnames()
        assert {"code/inference.py", "user_vectors/000.gz", "movie_vectors/000.gz"} <= set(names)
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
        assert not any("__pycache__" in n for n in names)


async def _call(app: Any, method: str, path: str, body: bytes = b"", headers: list[Any] | None = None) -> Any:
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"]


def test_bare_app_serves_the_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _load("recommender_generate_data_b", EXAMPLE / "generate_data.py")
    model_dir = gen.generate(tmp_path / "m", users=20, movies=30, dim=4, seed=2)
    monkeypatch.setenv("MODEL_DIR", str(model_dir))

    async def scenario() -> None:
        assert (await _call(bare_app.app, "GET", "/ping"))[0] == 503  # not loaded yet
        events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        replies: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return events.pop(0)

        async def send(message: dict[str, Any]) -> None:
            replies.append(message)

        await bare_app.app({"type": "lifespan"}, receive, send)
        assert [r["type"] for r in replies] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert (await _call(bare_app.app, "GET", "/ping"))[0] == 200
        json_h = [(b"content-type", b"application/json"), (b"accept", b"application/json")]
        status, body = await _call(bare_app.app, "POST", "/invocations", b'{"user_id": "u3", "k": 2}', json_h)
        assert status == 200 and len(json.loads(body)["recommendations"]) == 2
        status, body = await _call(bare_app.app, "POST", "/invocations", b'{"user_id": "nobody"}', json_h)
        assert (status, body) == (404, b"unknown user_id 'nobody'")
        assert (await _call(bare_app.app, "POST", "/invocations", b"x", [(b"content-type", b"text/csv")]))[
            0
        ] == 415
        assert (await _call(bare_app.app, "GET", "/nope"))[0] == 404

    asyncio.run(scenario())
