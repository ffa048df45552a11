"""Defects found reviewing the multi-model gate, over real sockets (tiny instances)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from moorage.dataplane.multimodel import MultiModelGate, rank

from .servers import Answer, Request
from .test_multimodel_gate import _call, _hit, _table, instances


def test_a_quiet_model_does_not_spill_because_its_instance_is_busy_with_other_models(
    tmp_path: Path,
) -> None:
    """Spilling is meant for a hot model (issue: "a hot model may be loaded on more instances; cold models
    spread"), but `place` (moorage/dataplane/multimodel.py) compares the instance's outstanding requests
    for *all* models with spill_at. So a model asked for once, already loaded on its instance, is sent to
    the next-ranked instance — a cold load there, seconds and a second copy in memory — merely because
    two requests for another model are under way where it is loaded."""
    ids = ["i-a", "i-b"]
    names = [f"m{n}.tar.gz" for n in range(200)]
    home = rank(names[0], ids)[0]
    quiet, busy = [n for n in names if rank(n, ids)[0] == home][:2]

    async def scenario() -> dict[str, int]:
        gate_open = asyncio.Event()
        gate_open.set()

        async def answer(request: Request) -> Answer:
            if request.header(b"x-amzn-sagemaker-target-model") == busy.encode():
                await gate_open.wait()
            return _hit(request)

        async with instances(tmp_path) as fleet:
            workers = [await fleet.add(name, answer) for name in ("a", "b")]
            table = _table(workers, MultiModelGate(spill_at=2))
            await _call(table, quiet.encode())  # loaded on its instance
            await _call(table, busy.encode())
            gate_open.clear()
            slow = [_call(table, busy.encode()) for _ in range(2)]  # two under way there
            while sum(len(s.requests) for s in fleet.servers.values()) < 4:
                await asyncio.sleep(0.01)
            await _call(table, quiet.encode())  # one more request for the quiet model
            gate_open.set()
            await asyncio.gather(*slow)
            return fleet.served(quiet.encode())

    served = asyncio.run(scenario())
    assert served == {home: 2, next(i for i in ids if i != home): 0}, served
