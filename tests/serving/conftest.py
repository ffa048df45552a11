from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .support import Instance

StartInstance = Callable[..., Instance]


@pytest.fixture
def start_instance() -> Iterator[StartInstance]:
    """Starts instances (`start_instance(model_dir, env=..., workers=...)`) and stops them after the test."""
    started: list[Instance] = []

    def start(model: Path, **options: object) -> Instance:
        instance = Instance(model, **options)  # type: ignore[arg-type]
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
