"""What the engine remembers of one scalable target between looks: this period's samples and each
metric's recent datapoints (the alarms' evaluation window).

Held in memory only: after a restart the alarms start over, as new CloudWatch alarms would, and need
their N datapoints again; cooldowns, which must not start over, come from the stored activities."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from moorage.control.scaling.metrics import MetricSpec, Sample, Window, datapoint
from moorage.control.scaling.ports import VariantReading


class Watch:
    def __init__(self) -> None:
        self.start: Sample | None = None  # the last sample of the previous period
        self.samples: list[Sample] = []
        self.histories: dict[MetricSpec, deque[float | None]] = {}

    def sample(self, at: float, reading: VariantReading | None) -> None:
        """Keep one look at the variant; a variant that is not serving gives nothing to keep."""
        if reading is not None:
            self.samples.append(Sample(at, reading))

    def close_period(self, metrics: Iterable[MetricSpec], keep: int) -> None:
        """Turn the period's samples into one datapoint per metric (None where there is no data), keeping
        the last `keep`; metrics no longer tracked are forgotten."""
        window = Window(self.start, tuple(self.samples))
        wanted = set(metrics)
        for spec in list(self.histories):
            if spec not in wanted:
                del self.histories[spec]
        for spec in wanted:
            history = self.histories.setdefault(spec, deque(maxlen=keep))
            history.append(datapoint(spec, window))
        if self.samples:
            self.start = self.samples[-1]
        self.samples = []
