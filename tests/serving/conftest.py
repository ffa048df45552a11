from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .multimodel_support import StartMultiModel, multimodel_instances
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


@pytest.fixture
def start_multimodel(tmp_path: Path) -> Iterator[StartMultiModel]:
    """Starts multi-model instances (`start_multimodel(build, **MOORAGE_MME_env)`, `build(models_dir)` writes
    the models first) and stops them after the test."""
    yield from multimodel_instances(tmp_path)
