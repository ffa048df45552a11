"""How much fuzzing a run does, shared by the fuzz modules: bounded and reproducible by default;
MOORAGE_FUZZ_EXAMPLES raises the count, MOORAGE_FUZZ_RANDOM=1 draws fresh examples each run."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("MOORAGE_FUZZ_EXAMPLES") or 0)
RANDOM = os.environ.get("MOORAGE_FUZZ_RANDOM", "") not in ("", "0")
# pytest-timeout's 300 s per test fits the default run; a longer hunt sets its own pace.
TIMEOUT = pytest.mark.timeout(0 if EXAMPLES else 300)

F = TypeVar("F", bound=Callable[..., Any])


def fuzz(default_examples: int) -> Callable[[F], F]:
    """Hypothesis settings for a bounded, reproducible run (MOORAGE_FUZZ_EXAMPLES raises the count)."""
    return settings(  # type: ignore[return-value]
        max_examples=EXAMPLES or default_examples,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        print_blob=RANDOM,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
