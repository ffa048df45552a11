"""A store of the test's own (SQLite in its temporary directory) and traffic written into a StatsBook
as the data plane writes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.dataplane.invoke import count_answer
from moorage.dataplane.stats import VariantStats
from moorage.store import Store, open_store

T0 = 1_796_520_600.0  # 2026-12-06 01:30:00 UTC, a whole minute


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "state")
    try:
        yield opened
    finally:
        opened.close()


def answer(
    stats: VariantStats, status: int = 200, model_us: float = 2_000.0, overhead_us: float = 100.0
) -> None:
    """One request answered, counted as the invocation path counts it."""
    count_answer(stats, status, model_us, overhead_us)
