"""Scaling settings from the environment, and the 0002 migration matching the tables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from moorage.control.scaling import ScalingSettings
from moorage.store import Store, open_store
from moorage.store.tables import Base


def test_defaults_are_aws() -> None:
    settings = ScalingSettings.from_environ({})
    assert (settings.period_seconds, settings.scale_out_datapoints, settings.scale_in_datapoints) == (
        60,
        3,
        15,
    )
    assert settings.sample_seconds == 10


def test_environment_overrides() -> None:
    settings = ScalingSettings.from_environ(
        {
            "MOORAGE_SCALING_PERIOD_SECONDS": "0.5",
            "MOORAGE_SCALE_OUT_DATAPOINTS": "2",
            "MOORAGE_SCALE_IN_DATAPOINTS": " ",
        }
    )
    assert (settings.period_seconds, settings.scale_out_datapoints, settings.scale_in_datapoints) == (
        0.5,
        2,
        15,
    )


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        (
            "MOORAGE_SCALING_PERIOD_SECONDS",
            "soon",
            "MOORAGE_SCALING_PERIOD_SECONDS must be a number of seconds",
        ),
        ("MOORAGE_SCALING_PERIOD_SECONDS", "0", "MOORAGE_SCALING_PERIOD_SECONDS must be positive"),
        ("MOORAGE_SCALE_OUT_DATAPOINTS", "1.5", "MOORAGE_SCALE_OUT_DATAPOINTS must be a whole number"),
        ("MOORAGE_SCALE_IN_DATAPOINTS", "0", "MOORAGE_SCALE_IN_DATAPOINTS must be at least 1"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        ScalingSettings.from_environ({name: value})


@pytest.fixture
def store(tmp_path: Path, store_url: str) -> Iterator[Store]:
    """On SQLite and on PostgreSQL (`store_url`)."""
    opened = open_store(tmp_path / "state", store_url)
    yield opened
    opened.close()


def test_the_migration_creates_the_tables_as_declared(store: Store) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    ours = {"scalable_targets", "scaling_policies", "scaling_activities"}
    assert [d for d in differences if any(table in repr(d) for table in ours)] == []
