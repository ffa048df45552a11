"""CloudWatch metric alarms: PutMetricAlarm, DescribeAlarms, DeleteAlarms, SetAlarmState and
DescribeAlarmHistory, over the alarm rows (docs/cloudwatch.md, "Alarms").

An alarm row's ``spec`` holds the accepted PutMetricAlarm members as the model names them (AlarmName and
Tags aside, which have their own columns); the evaluator reads it. Actions are stored and described but
never run. Each operation is a coroutine whose store work runs on the store's threads (`Store.run`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from moorage.api.cloudwatch.errors import (
    InvalidFormat,
    InvalidNextToken,
    InvalidParameterCombination,
    LimitExceeded,
    ResourceNotFound,
)
from moorage.clock import Clock
from moorage.control.context import Caller
from moorage.monitoring import tokens
from moorage.monitoring.alarm_history import BAD_TOKEN, configuration_update, describe_history, prune
from moorage.monitoring.alarm_spec import metric_alarm_spec
from moorage.monitoring.alarm_state import set_state
from moorage.store import Store
from moorage.store.tables import AlarmRow

Params = dict[str, Any]
INITIAL_STATE = "INSUFFICIENT_DATA"
INITIAL_REASON = "Unchecked: Initial alarm creation"
DEFAULT_PAGE = 50  # DescribeAlarms' MaxRecords
MAX_ALARMS = 10_000  # alarms in the store; PutMetricAlarm of one more is LimitExceeded
_ACTION_LISTS = ("OKActions", "AlarmActions", "InsufficientDataActions")


class Alarms:
    """The alarm operations. `min_period` is MOORAGE_ALARM_MIN_PERIOD_SECONDS (see alarm_spec)."""

    def __init__(
        self, store: Store, clock: Clock, *, min_period: int = 10, max_alarms: int = MAX_ALARMS
    ) -> None:
        self.store = store
        self.clock = clock
        self.min_period = min_period
        self.max_alarms = max_alarms

    async def put(self, caller: Caller, params: Params) -> Params:
        """Create the alarm, or replace the configuration of the one of that name (its state, ARN and
        tags stay, as on CloudWatch: Tags apply only when an alarm is created)."""
        spec = metric_alarm_spec(params, self.min_period)
        name = params["AlarmName"]
        arn = f"arn:aws:cloudwatch:{caller.region}:{caller.account}:alarm:{name}"
        tags = params.get("Tags", [])
        try:
            await self.store.run(self._put, name, arn, spec, tags, self.clock.time())
        except IntegrityError:  # created by a concurrent call meanwhile: this call replaces it
            await self.store.run(self._put, name, arn, spec, tags, self.clock.time())
        return {}

    async def describe(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(self._describe, params)

    async def delete(self, caller: Caller, params: Params) -> Params:
        """All the named alarms, or none of them when one does not exist (as on CloudWatch)."""
        await self.store.run(self._delete, list(dict.fromkeys(params["AlarmNames"])), self.clock.time())
        return {}

    async def set_state(self, caller: Caller, params: Params) -> Params:
        """Until its next evaluation, which may set it back, as on CloudWatch."""
        data = params.get("StateReasonData")
        reason_data = None if data is None else _reason_data(data)
        await self.store.run(self._set_state, params, reason_data, self.clock.time())
        return {}

    async def history(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(self._history, params)

    def _put(self, name: str, arn: str, spec: Params, tags: list[dict[str, str]], now: float) -> None:
        with self.store.session() as session:
            alarm = session.get(AlarmRow, name)
            if alarm is None:
                count = session.scalar(select(func.count()).select_from(AlarmRow)) or 0
                if count >= self.max_alarms:
                    raise LimitExceeded(
                        f"This server holds {count} alarms, its limit; delete alarms you no longer need."
                    )
                alarm = AlarmRow(
                    name=name,
                    arn=arn,
                    spec=spec,
                    state=INITIAL_STATE,
                    state_reason=INITIAL_REASON,
                    state_reason_data=None,
                    state_updated=now,
                    state_transitioned=now,
                    configuration_updated=now,
                    tags=tags,
                )
                session.add(alarm)
                session.flush()  # a concurrent create of the same name fails here, before the history
                configuration_update(session, name, "Create", _configuration(name, spec), now)
            else:
                original = {key: alarm.spec.get(key) for key in set(spec) | set(alarm.spec)}
                changed = {key: value for key, value in original.items() if spec.get(key) != value}
                alarm.spec = spec
                alarm.configuration_updated = now
                configuration_update(session, name, "Update", _configuration(name, spec), now, changed)
            prune(session, now)

    def _describe(self, params: Params) -> Params:
        if "AlarmNames" in params and "AlarmNamePrefix" in params:
            raise InvalidParameterCombination("Give AlarmNames or AlarmNamePrefix, not both.")
        types = params.get("AlarmTypes", ["MetricAlarm"])
        result: Params = {"MetricAlarms": [], "CompositeAlarms": []}
        if "LogAlarm" in types:
            result["LogAlarms"] = []
        # Moorage has no composite alarms: none is the child or the parent of another
        if "MetricAlarm" not in types or "ChildrenOfAlarmName" in params or "ParentsOfAlarmName" in params:
            return result
        query = select(AlarmRow).order_by(AlarmRow.name)
        if "AlarmNames" in params:
            query = query.where(AlarmRow.name.in_(params["AlarmNames"]))
        if "AlarmNamePrefix" in params:
            query = query.where(AlarmRow.name.startswith(params["AlarmNamePrefix"], autoescape=True))
        if "StateValue" in params:
            query = query.where(AlarmRow.state == params["StateValue"])
        if params.get("NextToken"):
            query = query.where(AlarmRow.name > _after(params["NextToken"]))
        limit = params.get("MaxRecords", DEFAULT_PAGE)
        prefix = params.get("ActionPrefix")
        chosen: list[AlarmRow] = []
        with self.store.session() as session:
            for alarm in session.scalars(query):
                if prefix is None or _has_action(alarm.spec, prefix):
                    chosen.append(alarm)
                    if len(chosen) > limit:
                        break
        result["MetricAlarms"] = [metric_alarm(alarm) for alarm in chosen[:limit]]
        if len(chosen) > limit:
            result["NextToken"] = _token(chosen[limit - 1].name)
        return result

    def _delete(self, names: list[str], now: float) -> None:
        with self.store.session() as session:
            alarms = list(session.scalars(select(AlarmRow).where(AlarmRow.name.in_(names))))
            missing = [name for name in names if name not in {alarm.name for alarm in alarms}]
            if missing:
                raise ResourceNotFound(
                    f"No alarm named {', '.join(missing)} exists, so no alarm was deleted; "
                    "DeleteAlarms deletes all the alarms it names or none."
                )
            for alarm in alarms:
                configuration_update(
                    session, alarm.name, "Delete", _configuration(alarm.name, alarm.spec), now
                )
                session.delete(alarm)
            prune(session, now)

    def _set_state(self, params: Params, reason_data: dict[str, Any] | None, now: float) -> None:
        with self.store.session() as session:
            alarm = session.get(AlarmRow, params["AlarmName"])
            if alarm is None:
                raise ResourceNotFound(f"No alarm named {params['AlarmName']} exists.")
            set_state(session, alarm, params["StateValue"], params["StateReason"], reason_data, now)
            prune(session, now)

    def _history(self, params: Params) -> Params:
        with self.store.session() as session:
            return describe_history(session, params)


def metric_alarm(alarm: AlarmRow) -> Params:
    """A MetricAlarm as DescribeAlarms gives it (members the alarm does not set are left out)."""
    spec = alarm.spec
    return {
        **spec,
        "AlarmName": alarm.name,
        "AlarmArn": alarm.arn,
        "AlarmConfigurationUpdatedTimestamp": alarm.configuration_updated,
        "ActionsEnabled": spec.get("ActionsEnabled", True),
        **{member: spec.get(member, []) for member in _ACTION_LISTS},
        "Dimensions": spec.get("Dimensions", []),
        "StateValue": alarm.state,
        "StateReason": alarm.state_reason,
        "StateReasonData": alarm.state_reason_data,
        "StateUpdatedTimestamp": alarm.state_updated,
        "StateTransitionedTimestamp": alarm.state_transitioned,
    }


def _configuration(name: str, spec: Params) -> Params:
    return {"AlarmName": name, **spec}


def _has_action(spec: Params, prefix: str) -> bool:
    return any(action.startswith(prefix) for member in _ACTION_LISTS for action in spec.get(member, []))


def _reason_data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidFormat(
            "StateReasonData is not valid JSON; give a JSON object, or leave it out."
        ) from None
    if not isinstance(data, dict):
        raise InvalidFormat("StateReasonData must be a JSON object.")
    return data


def _token(name: str) -> str:
    return tokens.token({"after": name})


def _after(token: str) -> str:
    after = (tokens.position(token) or {}).get("after")
    if not isinstance(after, str):
        raise InvalidNextToken(BAD_TOKEN)
    return after
