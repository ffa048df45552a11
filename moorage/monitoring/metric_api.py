"""GetMetricStatistics, GetMetricData and ListMetrics over the metric history: placeholder until built."""

from __future__ import annotations

from typing import Any

from moorage.api.errors import ValidationException
from moorage.clock import Clock
from moorage.control.context import Caller
from moorage.store import Store

Params = dict[str, Any]


class MetricApi:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def get_metric_statistics(self, caller: Caller, params: Params) -> Params:
        raise ValidationException("GetMetricStatistics is not available yet.")

    async def get_metric_data(self, caller: Caller, params: Params) -> Params:
        raise ValidationException("GetMetricData is not available yet.")

    async def list_metrics(self, caller: Caller, params: Params) -> Params:
        raise ValidationException("ListMetrics is not available yet.")
