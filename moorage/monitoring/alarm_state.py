"""An alarm's state: the one place it changes (evaluation, SetAlarmState) and is read (deployments'
rollback watch). A change of state value is an item of the alarm's history, as CloudWatch records it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.store.tables import AlarmHistoryRow, AlarmRow

STATES = ("OK", "ALARM", "INSUFFICIENT_DATA")


def set_state(
    session: Session,
    alarm: AlarmRow,
    state: str,
    reason: str,
    reason_data: dict[str, Any] | None,
    now: float,
) -> bool:
    """Record `state` for `alarm` (in `session`); True when the state value changed (a history item)."""
    old_state, old_reason = alarm.state, alarm.state_reason
    alarm.state_reason = reason
    alarm.state_reason_data = json.dumps(reason_data) if reason_data is not None else None
    alarm.state_updated = now
    if state == old_state:
        return False
    alarm.state = state
    alarm.state_transitioned = now
    new: dict[str, Any] = {"stateValue": state, "stateReason": reason}
    if reason_data is not None:
        new["stateReasonData"] = reason_data
    data = {
        "version": "1.0",
        "oldState": {"stateValue": old_state, "stateReason": old_reason},
        "newState": new,
    }
    session.add(
        AlarmHistoryRow(
            alarm_name=alarm.name,
            timestamp=now,
            item_type="StateUpdate",
            summary=f"Alarm updated from {old_state} to {state}",
            data=json.dumps(data),
        )
    )
    return True


def in_alarm(session: Session, names: Iterable[str]) -> dict[str, str]:
    """Of the alarms named, those in ALARM now, with their StateReason (missing alarms are not)."""
    wanted = list(names)
    if not wanted:
        return {}
    rows = session.execute(
        select(AlarmRow.name, AlarmRow.state_reason).where(
            AlarmRow.name.in_(wanted), AlarmRow.state == "ALARM"
        )
    ).all()
    return {name: reason for name, reason in rows}
