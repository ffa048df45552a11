"""Invocation totals shared between servers on one database: the one that runs autoscaling counts the
invocations every server carried, and the sum never goes down when a server restarts."""

from __future__ import annotations

from pathlib import Path

from moorage.dataplane.stats import StatsBook
from moorage.dataplane.traffic_sync import TrafficReporter
from moorage.store import open_store


def _carry(book: StatsBook, invocations: int, latency_us: float = 100.0) -> None:
    stats = book.variant("ep", "v")
    for _ in range(invocations):
        stats.invocations += 1
        stats.model_latency.observe(latency_us)


async def test_the_other_servers_totals_are_added_and_survive_a_restart(
    tmp_path: Path, postgres_url: str
) -> None:
    store = open_store(tmp_path / "state", postgres_url)
    try:
        books = [StatsBook(), StatsBook(), StatsBook()]
        leader, follower, restarted = (TrafficReporter(store, book) for book in books)
        _carry(books[0], 5)
        _carry(books[1], 7)
        await leader.report()
        await follower.report()
        others = await leader.others("ep", "v")
        assert others["invocations"] == 7 and others["latency_count"] == 7
        assert others["model_latency_us_sum"] == 700.0
        assert (await follower.others("ep", "v"))["invocations"] == 5
        # the follower restarts: a new id that starts from zero; its old totals still count
        _carry(books[2], 2)
        await restarted.report()
        assert (await leader.others("ep", "v"))["invocations"] == 9
        assert (await leader.others("ep", "other-variant"))["invocations"] == 0
    finally:
        store.close()
