"""Health checks: a variant's instances are pinged on a schedule, as SageMaker pings containers.

Only idle workers are pinged, and a ping counts as a request in flight while it runs (so least-
outstanding routing sends new requests elsewhere meanwhile): a worker busy with a long synchronous
request cannot answer /ping, and that is not a hang. An instance whose pinged workers fail to answer
within the timeout on several checks in a row is given up on."""

from __future__ import annotations

import asyncio

from moorage.fleet.member import Member


async def probe(member: Member, timeout: float) -> bool | None:
    """True: healthy. False: an idle worker did not answer. None: nothing to conclude (all busy)."""
    idle = [w for w in member.workers if w.client.outstanding == 0]
    if not idle:
        return None
    for worker in idle:
        worker.client.outstanding += 1
    try:
        answers = await asyncio.gather(*(member.instance.ping(w.index, timeout) for w in idle))
        # a worker that took a request while being pinged may have been too busy to answer it
        joined = [w.client.outstanding > 1 for w in idle]
    finally:
        for worker in idle:
            worker.client.outstanding -= 1
    if all(answers):
        return True
    if all(ok or busy for ok, busy in zip(answers, joined, strict=True)):
        return None
    return False
