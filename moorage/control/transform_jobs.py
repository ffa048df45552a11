"""Batch transform jobs: CreateTransformJob / DescribeTransformJob / ListTransformJobs / StopTransformJob.

These operations only validate and record; the reconciling server's runner
(moorage/jobs/transform/runner.py) carries jobs out and records how far they got. Rows are never
deleted: a job name stays taken for good, as on AWS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from moorage.api.errors import (
    ResourceInUse,
    ResourceLimitExceeded,
    ResourceNotFound,
    ValidationException,
    not_found,
)
from moorage.api.json_protocol import PROGRESS_BY_JOB_MEMBER, PROGRESS_MEMBER
from moorage.control.context import Caller
from moorage.control.listing import list_page
from moorage.control.tags import check_tags
from moorage.fleet.plan import DeploymentFailed, primary_container
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, location
from moorage.jobs.transform.inputs import INPUT_FIELD, OUTPUT_FIELD
from moorage.jobs.transform.parameters import DEFAULT_PAYLOAD_MB, DEFAULT_STRATEGY, MAX_PAYLOAD_MB
from moorage.jobs.transform.records import TransformSettings, check_settings
from moorage.store import Store
from moorage.store.tables import ModelRow, TransformJobRow

Params = dict[str, Any]

IN_PROGRESS, COMPLETED, FAILED, STOPPING, STOPPED = "InProgress", "Completed", "Failed", "Stopping", "Stopped"
ACTIVE = (IN_PROGRESS, STOPPING)
# MaxConcurrentTransforms x MaxPayloadInMB may not pass this (AWS's limit on what a job keeps in flight)
MAX_IN_FLIGHT_MB = 100
MAX_ENVIRONMENT_VALUE = 10240
_UNSUPPORTED_DATA_TYPES = {
    "AugmentedManifestFile": "augmented manifests (a JSON Lines file of records with attribute names)",
    "Converse": "Converse-format data",
}


def job_not_found(name: str) -> ValidationException:
    """AWS's answer for a job that does not exist (the waiter stops on ValidationException)."""
    return ValidationException(f"Could not find requested job with name {name}")


class TransformJobs:
    """The four operations; `wake` tells the runner (when this server runs jobs) to look at the rows."""

    def __init__(
        self,
        store: Store,
        max_instances: int,
        wake: Callable[[], None] = lambda: None,
        access: LocalAccess = LocalAccess(),
    ) -> None:
        self.store = store
        self.max_instances = max_instances  # per job: each instance is real processes on this machine
        self.wake = wake
        self.access = access  # with --credentials: the disk paths a job may name

    async def create(self, caller: Caller, params: Params) -> Params:
        count = params["TransformResources"]["InstanceCount"]
        if count > self.max_instances:
            raise ResourceLimitExceeded(
                "The account-level service limit 'Maximum number of instances per transform job' is "
                f"{self.max_instances} Instances, with current utilization of 0 Instances and a request "
                f"delta of {count} Instances. Lower TransformResources.InstanceCount, or raise "
                "MOORAGE_MAX_INSTANCES_PER_ENDPOINT."
            )
        result = await self.store.run(create_transform_job, self.store, caller, params, self.access)
        self.wake()
        return result

    async def describe(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(describe_transform_job, self.store, caller, params)

    async def list(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(list_transform_jobs, self.store, caller, params)

    async def stop(self, caller: Caller, params: Params) -> Params:
        result = await self.store.run(stop_transform_job, self.store, caller, params)
        self.wake()
        return result


def create_transform_job(
    store: Store,
    caller: Caller,
    params: Params,
    access: LocalAccess = LocalAccess(),
) -> Params:
    name = params["TransformJobName"]
    check_request(params)
    source = params["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
    try:
        access.check(source, INPUT_FIELD)
        access.check(params["TransformOutput"]["S3OutputPath"], OUTPUT_FIELD)
    except ObjectError as exc:
        raise ValidationException(str(exc)) from None
    check_tags(params.get("Tags", []))
    arn = caller.arn("transform-job", name)
    spec = {k: v for k, v in params.items() if k != "Tags"}
    now = time.time()
    with store.session() as session:
        existing = session.scalars(
            select(TransformJobRow).where(TransformJobRow.name_key == name.lower())
        ).first()
        if existing is not None:
            raise ResourceInUse(
                "Job name must be unique within an AWS account and region, and a job with this name "
                f"already exists ({existing.arn})"
            )
        model = session.get(ModelRow, params["ModelName"])
        if model is None:
            raise ValidationException(not_found("model", caller.arn("model", params["ModelName"])))
        snapshot = {**model.spec, "ModelArn": model.arn}
        try:
            primary_container(snapshot)
        except DeploymentFailed as exc:
            raise ValidationException(str(exc)) from None
        session.add(
            TransformJobRow(
                name=name,
                name_key=name.lower(),
                arn=arn,
                status=IN_PROGRESS,
                spec=spec,
                model=snapshot,
                tags=params.get("Tags", []),
                creation_time=now,
                last_modified_time=now,
                records_done=0,
                records_total=0,
                objects_done=0,
                objects_total=0,
            )
        )
    return {"TransformJobArn": arn}


def check_request(params: Params) -> None:
    """What the model (botocore's shapes) cannot say: AWS's cross-member limits, and what this server
    does not run (refused, never silently ignored)."""
    concurrent = params.get("MaxConcurrentTransforms")
    payload = params.get("MaxPayloadInMB")
    if payload is not None and payload > MAX_PAYLOAD_MB:
        raise ValidationException(
            f"MaxPayloadInMB is {payload}; it can be at most {MAX_PAYLOAD_MB}. Use a smaller value."
        )
    if payload == 0:
        raise ValidationException(
            "MaxPayloadInMB 0 (chunked streaming to the container) is not supported by this server. "
            f"Set MaxPayloadInMB between 1 and {MAX_PAYLOAD_MB}."
        )
    if concurrent is not None and payload is not None and concurrent * payload > MAX_IN_FLIGHT_MB:
        raise ValidationException(
            f"MaxConcurrentTransforms ({concurrent}) multiplied by MaxPayloadInMB ({payload}) is "
            f"{concurrent * payload}; it can be at most {MAX_IN_FLIGHT_MB}. Lower one of them."
        )
    for key, value in (params.get("Environment") or {}).items():
        if len(value) > MAX_ENVIRONMENT_VALUE:
            raise ValidationException(
                f"Environment variable {key} has a value of {len(value)} characters; values can have at "
                f"most {MAX_ENVIRONMENT_VALUE}."
            )
    source = params["TransformInput"]["DataSource"]["S3DataSource"]
    if (kind := source["S3DataType"]) in _UNSUPPORTED_DATA_TYPES:
        raise ValidationException(
            f"S3DataType {kind} ({_UNSUPPORTED_DATA_TYPES[kind]}) is not supported by this server for "
            "batch transform. Use S3Prefix or ManifestFile."
        )
    if params.get("DataCaptureConfig"):
        raise ValidationException(
            "DataCaptureConfig (capturing batch transform inputs and outputs) is not supported by this "
            "server. Remove DataCaptureConfig."
        )
    for uri, field in (
        (source["S3Uri"], "TransformInput.DataSource.S3DataSource.S3Uri"),
        (params["TransformOutput"]["S3OutputPath"], "TransformOutput.S3OutputPath"),
    ):
        if uri.startswith("https://"):
            raise ValidationException(f"{field} is {uri}; use an s3:// or file:// location.")
        try:
            location(uri, field)
        except ObjectError as exc:
            raise ValidationException(str(exc)) from None
    _check_records(params)


def _check_records(params: Params) -> None:
    """SplitType / BatchStrategy / DataProcessing combinations the record handling refuses."""
    settings = TransformSettings.from_job(
        params,
        params.get("MaxPayloadInMB") or DEFAULT_PAYLOAD_MB,
        params.get("BatchStrategy") or DEFAULT_STRATEGY,
    )
    if (problem := check_settings(settings)) is not None:
        raise ValidationException(problem)


def _load(store: Store, name: str) -> TransformJobRow:
    with store.session() as session:
        row = session.get(TransformJobRow, name)
    if row is None:
        raise job_not_found(name)
    return row


def progress(row: TransformJobRow) -> Params:
    """How far a job got: what `moorage jobs` shows (an extension member, not SageMaker's)."""
    return {
        "RecordsDone": row.records_done,
        "RecordsTotal": row.records_total,
        "ObjectsDone": row.objects_done,
        "ObjectsTotal": row.objects_total,
    }


def describe_transform_job(store: Store, caller: Caller, params: Params) -> Params:
    row = _load(store, params["TransformJobName"])
    return {
        **row.spec,
        "TransformJobArn": row.arn,
        "TransformJobStatus": row.status,
        "FailureReason": row.failure_reason,
        "CreationTime": row.creation_time,
        "TransformStartTime": row.start_time,
        "TransformEndTime": row.end_time,
        PROGRESS_MEMBER: progress(row),
    }


def list_transform_jobs(store: Store, caller: Caller, params: Params) -> Params:
    with store.session() as session:
        rows = session.scalars(select(TransformJobRow)).all()
    summaries = [
        {
            "TransformJobName": r.name,
            "TransformJobArn": r.arn,
            "CreationTime": r.creation_time,
            "TransformEndTime": r.end_time,
            "LastModifiedTime": r.last_modified_time,
            "TransformJobStatus": r.status,
            "FailureReason": r.failure_reason,
        }
        for r in rows
    ]
    page, token = list_page(summaries, params, name_key="TransformJobName", status_key="TransformJobStatus")
    by_name = {r.name: r for r in rows}
    shown = {s["TransformJobName"]: progress(by_name[s["TransformJobName"]]) for s in page}
    return {"TransformJobSummaries": page, "NextToken": token, PROGRESS_BY_JOB_MEMBER: shown}


def stop_transform_job(store: Store, caller: Caller, params: Params) -> Params:
    """InProgress becomes Stopping (the runner stops the instances, then marks it Stopped); stopping a
    job that is already stopping or stopped changes nothing."""
    name = params["TransformJobName"]
    with store.session() as session:
        row = session.get(TransformJobRow, name)
        if row is None:  # botocore's model gives StopTransformJob this one error
            raise ResourceNotFound(f"Could not find requested job with name {name}")
        if row.status in (COMPLETED, FAILED):
            raise ValidationException(
                f"Transform job {name} has already finished (status {row.status}); only a job that is "
                "InProgress can be stopped."
            )
        if row.status == IN_PROGRESS:
            row.status = STOPPING
            row.last_modified_time = time.time()
    return {}
