"""`moorage jobs`: batch transform jobs with their status and records done / total, and a progress bar
while one runs (`--watch` redraws until none is InProgress).

Like `moorage ls` it reaches the server only through boto3 (ListTransformJobs). The progress comes in
an extension member of the answer (MoorageProgressByJob) that botocore's model does not name, so it is
read from the raw response."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from moorage.api.json_protocol import PROGRESS_BY_JOB_MEMBER
from moorage.client_commands import Server, format_table, run_against_server

BAR_WIDTH = 20
WATCH_SECONDS = 1.0
_ACTIVE = ("InProgress", "Stopping")
_REASON_CHARS = 60


def list_jobs(endpoint_url: str | None, watch: bool = False, name_contains: str | None = None) -> int:
    def action(server: Server) -> None:
        sm = server.client("sagemaker")
        while True:
            jobs, progress = _jobs(sm, name_contains)
            text = format_table(job_rows(jobs, progress)) if jobs else f"No transform jobs on {server.url}."
            if watch and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[J")  # redraw in place
            print(text, flush=True)
            if not watch or not any(job["TransformJobStatus"] in _ACTIVE for job in jobs):
                return
            time.sleep(WATCH_SECONDS)
            if not sys.stdout.isatty():
                print()

    return run_against_server(endpoint_url, action)


# per client, the progress its ListTransformJobs answers carried: one handler per client, registered
# once (a `--watch` redraws every second on the same client)
_progress: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _jobs(sm: Any, name_contains: str | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    progress = _progress.get(sm)
    if progress is None:
        progress = _progress[sm] = {}
        kept = progress

        def keep_raw(http_response: Any, **_: Any) -> None:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                kept.update(json.loads(http_response.content).get(PROGRESS_BY_JOB_MEMBER) or {})

        sm.meta.events.register("after-call.sagemaker.ListTransformJobs", keep_raw)
    progress.clear()
    params: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
    if name_contains:
        params["NameContains"] = name_contains
    pages = sm.get_paginator("list_transform_jobs").paginate(**params)
    jobs = [dict(job) for page in pages for job in page["TransformJobSummaries"]]
    return jobs, dict(progress)


def job_rows(jobs: Sequence[Mapping[str, Any]], progress: Mapping[str, Any]) -> list[list[str]]:
    """A header, then one row per job: status, records and objects done / total, a bar, why it failed."""
    rows = [["JOB", "STATUS", "RECORDS", "OBJECTS", "PROGRESS", "FAILURE REASON"]]
    for job in jobs:
        done = progress.get(job["TransformJobName"]) or {}
        records = _fraction(done.get("RecordsDone"), done.get("RecordsTotal"))
        objects = _fraction(done.get("ObjectsDone"), done.get("ObjectsTotal"))
        reason = " ".join(str(job.get("FailureReason") or "").split())  # one line per job
        if len(reason) > _REASON_CHARS:
            reason = reason[: _REASON_CHARS - 1] + "…"
        rows.append([job["TransformJobName"], job["TransformJobStatus"], records, objects, bar(done), reason])
    if not any(row[-1] for row in rows[1:]):
        return [row[:-1] for row in rows]
    return rows


def _fraction(done: object, total: object) -> str:
    if done is None:
        return "-"
    return f"{done}/{total}" if total else str(done)


def bar(progress: Mapping[str, Any]) -> str:
    """`[#########-----------]  45%` from the objects done (each of equal weight) and, within the
    objects under way, their records; `-` before anything is known."""
    objects_total = progress.get("ObjectsTotal") or 0
    records_total = progress.get("RecordsTotal") or 0
    if not objects_total:
        return "-"
    share = progress.get("ObjectsDone", 0) / objects_total
    if records_total and objects_total == 1:
        share = max(share, progress.get("RecordsDone", 0) / records_total)
    share = min(1.0, share)
    filled = round(share * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {share * 100:3.0f}%"
