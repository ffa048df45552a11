"""DescribeEndpoint's variant summaries between an accepted capacity change and the fleet taking it up."""

from __future__ import annotations

from typing import Any

from moorage.control.deployment.progress import VariantState
from moorage.control.endpoints import _variant_summary

VARIANT = {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1}
MESSAGE = "Changing the instance count from 1 to 3."


def _deployed(instances: int) -> dict[str, Any]:
    return {
        "config": {"ProductionVariants": [VARIANT]},
        "models": {"m": {}},
        "capacity": {"AllTraffic": {"instances": instances, "weight": 1.0}},
    }


def test_an_accepted_resize_shows_as_updating_before_the_fleet_starts_it() -> None:
    live = VariantState(1, 1.0, [])
    summary = _variant_summary(VARIANT, _deployed(3), live, 0.0, resizing=123.0)
    assert (summary["CurrentInstanceCount"], summary["DesiredInstanceCount"]) == (1, 3)
    assert summary["VariantStatus"] == [{"Status": "Updating", "StatusMessage": MESSAGE, "StartTime": 123.0}]


def test_the_fleets_own_status_wins_and_a_steady_variant_has_none() -> None:
    own = [{"Status": "Updating", "StatusMessage": MESSAGE, "StartTime": 5.0}]
    summary = _variant_summary(VARIANT, _deployed(3), VariantState(1, 1.0, own), 0.0, resizing=9.0)
    assert summary["VariantStatus"] == own
    steady = _variant_summary(VARIANT, _deployed(3), VariantState(3, 1.0, []), 0.0, resizing=9.0)
    assert "VariantStatus" not in steady
    assert "VariantStatus" not in _variant_summary(VARIANT, _deployed(3), VariantState(1, 1.0, []), 0.0)
