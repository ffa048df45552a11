"""How often the scaling engine looks and how many looks an alarm needs: settings, so tests run in seconds.

The defaults are AWS's: one-minute datapoints, a scale-out alarm of 3 of 3 datapoints above the target and
a scale-in alarm of 15 of 15 below 90 % of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moorage.envvars import seconds, whole_number

# Looks per period: gauges (concurrency, CPU, memory) are averaged over these samples; at the default
# one-minute period this is every 10 s, the resolution of SageMaker's high-resolution concurrency metric.
SAMPLES_PER_PERIOD = 6


@dataclass(frozen=True)
class ScalingSettings:
    period_seconds: float = 60.0
    scale_out_datapoints: int = 3
    scale_in_datapoints: int = 15

    def __post_init__(self) -> None:
        if not self.period_seconds > 0:
            raise ValueError(f"MOORAGE_SCALING_PERIOD_SECONDS must be positive, not {self.period_seconds}")
        for name, value in (
            ("MOORAGE_SCALE_OUT_DATAPOINTS", self.scale_out_datapoints),
            ("MOORAGE_SCALE_IN_DATAPOINTS", self.scale_in_datapoints),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")

    @property
    def sample_seconds(self) -> float:
        return self.period_seconds / SAMPLES_PER_PERIOD

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ScalingSettings:
        """Read MOORAGE_SCALING_PERIOD_SECONDS and MOORAGE_SCALE_{OUT,IN}_DATAPOINTS; unset or empty is
        the default."""
        defaults = cls()
        return cls(
            period_seconds=seconds(environ, "MOORAGE_SCALING_PERIOD_SECONDS", defaults.period_seconds),
            scale_out_datapoints=whole_number(
                environ, "MOORAGE_SCALE_OUT_DATAPOINTS", defaults.scale_out_datapoints
            ),
            scale_in_datapoints=whole_number(
                environ, "MOORAGE_SCALE_IN_DATAPOINTS", defaults.scale_in_datapoints
            ),
        )
