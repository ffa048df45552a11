"""CloudWatch's operation table (moorage/api/cloudwatch/service.py serves it in every protocol): the
alarm operations and the metric queries. Any other CloudWatch operation is answered NotImplemented."""

from __future__ import annotations

from moorage.api.json_service import Operation
from moorage.monitoring.alarms import Alarms
from moorage.monitoring.metric_api import MetricApi


def operations(metrics: MetricApi, alarms: Alarms) -> dict[str, Operation]:
    return {
        "PutMetricAlarm": alarms.put,
        "DescribeAlarms": alarms.describe,
        "DeleteAlarms": alarms.delete,
        "SetAlarmState": alarms.set_state,
        "DescribeAlarmHistory": alarms.history,
        "GetMetricData": metrics.get_metric_data,
        "GetMetricStatistics": metrics.get_metric_statistics,
        "ListMetrics": metrics.list_metrics,
    }
