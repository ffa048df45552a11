"""An alarm's history: the ConfigurationUpdate items PutMetricAlarm and DeleteAlarms write, and
DescribeAlarmHistory over those and the StateUpdate items `alarm_state.set_state` writes.

Items are kept 30 days, as CloudWatch keeps them; a deleted alarm's history stays readable until then.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from moorage.api.cloudwatch.errors import InvalidNextToken
from moorage.monitoring import tokens
from moorage.store.tables import AlarmHistoryRow

Params = dict[str, Any]
RETENTION_SECONDS = 30 * 24 * 3600
DEFAULT_PAGE = 100  # DescribeAlarmHistory's MaxRecords
MAX_SUMMARY = 255  # HistorySummary's length in the model
MAX_DATA = 4095  # HistoryData's
HALF_MILLISECOND = 0.0005
BAD_TOKEN = "The NextToken is not valid; pass the NextToken of the previous response unchanged."
_PAST = {"Create": "created", "Update": "updated", "Delete": "deleted"}
_LEADING_CAPITALS = re.compile(r"^[A-Z]+(?=[A-Z][a-z])")
_ALARM_KEY = {"Create": "createdAlarm", "Update": "updatedAlarm", "Delete": "deletedAlarm"}


def configuration_update(
    session: Session, name: str, kind: str, alarm: Params, now: float, original: Params | None = None
) -> None:
    """Record that the alarm `name` was created, updated or deleted (`kind`); `alarm` is its
    configuration then, `original` what an update changed (the fields' earlier values)."""
    data: Params = {"version": "1.0", "type": kind, _ALARM_KEY[kind]: _camel(alarm)}
    if original is not None:
        data["originalUpdatedFields"] = _camel(original)
    text = json.dumps(data, separators=(",", ":"))
    if len(text) > MAX_DATA:  # large descriptions and action lists: the item still says what happened
        text = json.dumps({"version": "1.0", "type": kind, _ALARM_KEY[kind]: {"alarmName": name}})
    summary = f'Alarm "{name}" {_PAST[kind]}'
    session.add(
        AlarmHistoryRow(
            alarm_name=name,
            timestamp=now,
            item_type="ConfigurationUpdate",
            summary=summary if len(summary) <= MAX_SUMMARY else summary[: MAX_SUMMARY - 3] + "...",
            data=text,
        )
    )


def prune(session: Session, now: float) -> None:
    session.execute(delete(AlarmHistoryRow).where(AlarmHistoryRow.timestamp < now - RETENTION_SECONDS))


def describe_history(session: Session, params: Params) -> Params:
    """DescribeAlarmHistory: newest first unless ScanBy is TimestampAscending; the token holds the
    position of the last item returned, so items written between pages do not shift the next one."""
    if "MetricAlarm" not in params.get("AlarmTypes", ["MetricAlarm"]) or "AlarmContributorId" in params:
        return {"AlarmHistoryItems": []}  # Moorage has metric alarms only, none with contributors
    ascending = params.get("ScanBy") == "TimestampAscending"
    row = AlarmHistoryRow
    query = select(row)
    if "AlarmName" in params:
        query = query.where(row.alarm_name == params["AlarmName"])
    if "HistoryItemType" in params:
        query = query.where(row.item_type == params["HistoryItemType"])
    # times are shown to the millisecond: a date given as shown holds the items shown at it
    if "StartDate" in params:
        query = query.where(row.timestamp >= params["StartDate"].timestamp() - HALF_MILLISECOND)
    if "EndDate" in params:
        query = query.where(row.timestamp < params["EndDate"].timestamp() + HALF_MILLISECOND)
    if params.get("NextToken"):
        at, last = _position(params["NextToken"])
        if ascending:
            query = query.where(or_(row.timestamp > at, and_(row.timestamp == at, row.id > last)))
        else:
            query = query.where(or_(row.timestamp < at, and_(row.timestamp == at, row.id < last)))
    order = (row.timestamp.asc(), row.id.asc()) if ascending else (row.timestamp.desc(), row.id.desc())
    limit = params.get("MaxRecords", DEFAULT_PAGE)
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    result: Params = {"AlarmHistoryItems": [_item(item) for item in rows[:limit]]}
    if len(rows) > limit:
        result["NextToken"] = _token(rows[limit - 1])
    return result


def _item(row: AlarmHistoryRow) -> Params:
    return {
        "AlarmName": row.alarm_name,
        "AlarmType": "MetricAlarm",
        "Timestamp": row.timestamp,
        "HistoryItemType": row.item_type,
        "HistorySummary": row.summary,
        "HistoryData": row.data,
    }


def _token(row: AlarmHistoryRow) -> str:
    return tokens.token({"at": row.timestamp, "id": row.id})


def _position(token: str) -> tuple[float, int]:
    """The time and id of the last item a page showed (a number the database cannot hold is no id)."""
    position = tokens.position(token) or {}
    at, last = tokens.moment(position.get("at")), tokens.whole(position.get("id"))
    if at is None or last is None:
        raise InvalidNextToken(BAD_TOKEN)
    return at, last


def _camel(value: Any) -> Any:
    """An alarm configuration with lowerCamelCase names, as CloudWatch writes it in HistoryData."""
    if isinstance(value, dict):
        return {_lower_camel(key): _camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel(item) for item in value]
    return value


def _lower_camel(name: str) -> str:
    """``AlarmName`` -> ``alarmName``, ``OKActions`` -> ``okActions``."""
    name = _LEADING_CAPITALS.sub(lambda match: match.group().lower(), name)
    return name[:1].lower() + name[1:]
