"""The capture process's records waiting to be written, and their writing: one object per destination,
endpoint, variant and hour per batch, as SageMaker names them.

A write the store could not take for now (unreachable, busy) is tried again with the next batch, three
attempts in all; one it refuses (no such bucket, access denied, a folder that cannot be created) drops
that object's records; either way the endpoint log and the server log say so. Each record carries a
weight (its share of the bytes the server counts as held for it, settings.py); `write` returns the
weight released, so the server knows how much room it has again."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from moorage.capture.config import DESTINATION_FIELD
from moorage.capture.records import LineFormat, Record, Target, object_uri
from moorage.capture.settings import MIB, CaptureSettings
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, write_object
from moorage.logs import EndpointLogs

log = logging.getLogger("moorage.capture")
# writes of one object that may fail for a passing reason before its records are dropped
MAX_ATTEMPTS = 3
CONTENT_TYPE = "application/jsonlines"


@dataclass
class _Group:
    """One object's worth: the records of one target's destination, endpoint and variant in one hour."""

    format: LineFormat
    records: list[Record] = field(default_factory=list)
    weight: int = 0
    attempts: int = 0  # writes that failed and may be tried again

    @property
    def target(self) -> Target:
        return self.format.target


@dataclass
class Outcome:
    """What one `write` did."""

    written: int = 0
    dropped: int = 0
    released: int = 0  # weight of the records written or dropped


class Batches:
    def __init__(
        self, settings: CaptureSettings, logs: EndpointLogs | None = None, access: LocalAccess = LocalAccess()
    ) -> None:
        self.settings = settings
        self.logs = logs
        self.access = access  # with --credentials, local destinations only below --local-data-root
        self.formats: dict[int, LineFormat] = {}  # tap number -> its target's line format
        self._groups: dict[tuple[str, str, str, int], _Group] = {}
        self._again: list[_Group] = []  # failed for a passing reason: written again with the next batch
        self.weight = 0  # of the records waiting

    @property
    def waiting(self) -> int:
        return sum(len(g.records) for g in self._groups.values()) + sum(len(g.records) for g in self._again)

    def target(self, number: int, target: Target) -> None:
        """What tap `number`'s records are (its records come after this)."""
        self.formats[number] = LineFormat(target)

    def add(self, records: list[Record], weight: int) -> None:
        """Records to write with the next batch; `weight` is theirs together (shared out evenly)."""
        if not records:
            return
        lists: dict[tuple[int, int], list[Record]] = {}  # (tap, hour) -> its records here
        for record in records:
            key = (record[0], int(record[1] // 3600))
            same = lists.get(key)
            if same is None:
                lists[key] = [record]
            else:
                same.append(record)
        each, extra = divmod(weight, len(records))
        groups = self._groups
        for (tap, hour), more in lists.items():
            line_format = self.formats[tap]
            target = line_format.target
            where = (target.destination, target.endpoint, target.variant, hour)
            group = groups.get(where)
            if group is None:
                group = groups[where] = _Group(line_format)
            group.records += more
            group.weight += each * len(more) + extra
            extra = 0
        self.weight += weight

    def drops(self, endpoint: str, variant: str, count: int) -> None:
        """Records the server dropped for want of room: said in the endpoint log."""
        self._tell(endpoint, _no_room(variant, count, self.settings.max_buffer_bytes))

    def write(self, final: bool = False) -> Outcome:
        """Write what waits now; `final`: no later try for what fails."""
        groups = [*self._again, *self._groups.values()]
        self._again, self._groups = [], {}
        outcome = Outcome()
        for group in groups:
            done = self._write(group, final)
            if done is None:
                self._again.append(group)
                continue
            if done:
                outcome.written += len(group.records)
            else:
                outcome.dropped += len(group.records)
            outcome.released += group.weight
        self.weight -= outcome.released
        return outcome

    def _write(self, group: _Group, final: bool) -> bool | None:
        """Write one object: True when written, None when it is to be tried again, False when its
        records are dropped."""
        target, records = group.target, group.records
        try:
            body = group.format.lines(records)
            uri = object_uri(target.destination, target.endpoint, target.variant, records[0][1])
            self.access.check(target.destination, DESTINATION_FIELD)
            write_object(uri, body, DESTINATION_FIELD, CONTENT_TYPE)
        except ObjectError as exc:
            group.attempts += 1
            retry = exc.transient and not final and group.attempts < MAX_ATTEMPTS
            self._tell(target.endpoint, _write_failed(target, len(records), exc, retry, self.settings))
            return None if retry else False
        except Exception:  # a fault of this program's: these records are lost, the others still written
            log.exception("data capture: %d record(s) of endpoint %s failed", len(records), target.endpoint)
            return False
        return True

    def _tell(self, endpoint: str, message: str) -> None:
        log.warning("endpoint %s: %s", endpoint, message)
        if self.logs is not None:
            try:
                self.logs.write(endpoint, message)
            except OSError:
                log.exception("could not write to the log of endpoint %s", endpoint)


def _write_failed(
    target: Target, count: int, exc: ObjectError, retry: bool, settings: CaptureSettings
) -> str:
    outcome = (
        f"they are tried again within {settings.flush_seconds:g} s"
        if retry
        else "they are dropped; fix the destination (or the S3 store) and later requests are captured"
    )
    return (
        f"data capture: {count} record(s) of variant {target.variant} could not be written: {exc} "
        f"({outcome})."
    )


def _no_room(variant: str, count: int, limit: int) -> str:
    return (
        f"data capture: {count} record(s) of variant {variant} were dropped: captured data waiting to be "
        f"written had reached the limit of {limit / MIB:g} MiB (MOORAGE_CAPTURE_MAX_BUFFER_BYTES; a "
        "request and response larger than that are never captured). The destination may be slow or "
        "unreachable, or the sampling percentage too high for this traffic."
    )
