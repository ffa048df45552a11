"""SQLAlchemy tables. Rows hold domain facts, never wire shapes: `spec` columns keep the accepted request
members so Describe* can echo every field the user sent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base for every Moorage table."""


class ModelRow(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048))
    creation_time: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class EndpointConfigRow(Base):
    __tablename__ = "endpoint_configs"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048))
    creation_time: Mapped[float] = mapped_column(Float)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class EndpointRow(Base):
    __tablename__ = "endpoints"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # Endpoint names are unique regardless of case; the original spelling is kept in `name`.
    name_key: Mapped[str] = mapped_column(String(63), unique=True, index=True)
    arn: Mapped[str] = mapped_column(String(2048))
    config_name: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    creation_time: Mapped[float] = mapped_column(Float)
    last_modified_time: Mapped[float] = mapped_column(Float)
    # What is (or is being) deployed: the endpoint config and its models as they were when the
    # deployment was accepted, so a restart can rebuild instances even if those resources are deleted.
    deployed: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    pending_start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    deployment_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every write; each write is conditional on the version read (moorage/store/endpoints.py).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


# Application Auto Scaling (SageMaker endpoint variants). A scalable target is keyed the way AWS keys it:
# ResourceId + ScalableDimension (the namespace is implied by the dimension).
class ScalableTargetRow(Base):
    __tablename__ = "scalable_targets"

    resource_id: Mapped[str] = mapped_column(String(1600), primary_key=True)
    scalable_dimension: Mapped[str] = mapped_column(String(128), primary_key=True)
    service_namespace: Mapped[str] = mapped_column(String(32))
    # Lower-cased endpoint name: DeleteEndpoint deregisters the endpoint's targets whatever the spelling.
    endpoint_key: Mapped[str] = mapped_column(String(63), index=True)
    endpoint_name: Mapped[str] = mapped_column(String(63))
    variant_name: Mapped[str] = mapped_column(String(63))
    arn: Mapped[str] = mapped_column(String(2048))
    min_capacity: Mapped[int] = mapped_column(Integer)
    max_capacity: Mapped[int] = mapped_column(Integer)
    suspended_state: Mapped[dict[str, bool]] = mapped_column(JSON)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    creation_time: Mapped[float] = mapped_column(Float)
    # When MinCapacity/MaxCapacity last changed, until the engine has brought the variant's desired
    # instance count inside them (None: nothing to enforce). Stored, so a restart still enforces them.
    bounds_pending_since: Mapped[float | None] = mapped_column(Float, nullable=True)


class ScalingPolicyRow(Base):
    __tablename__ = "scaling_policies"

    # A policy name is unique per scalable target, as on AWS.
    resource_id: Mapped[str] = mapped_column(String(1600), primary_key=True)
    scalable_dimension: Mapped[str] = mapped_column(String(128), primary_key=True)
    policy_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048), unique=True)
    service_namespace: Mapped[str] = mapped_column(String(32))
    policy_type: Mapped[str] = mapped_column(String(32))
    # The TargetTrackingScalingPolicyConfiguration as accepted, echoed by DescribeScalingPolicies.
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    alarms: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    creation_time: Mapped[float] = mapped_column(Float)


class ScalingActivityRow(Base):
    __tablename__ = "scaling_activities"

    # Insertion order: newest first in DescribeScalingActivities, and a stable NextToken position.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    activity_id: Mapped[str] = mapped_column(String(64), unique=True)
    service_namespace: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(1600), index=True)
    scalable_dimension: Mapped[str] = mapped_column(String(128))
    # scale-out | scale-in (policy decisions, which cooldowns count), bounds (Min/MaxCapacity changed),
    # not-scaled (an alarm fired but the capacity could not move; shown with IncludeNotScaledActivities)
    kind: Mapped[str] = mapped_column(String(16))
    policy_name: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # the desired instance count before the change, and the one it sets (cooldowns need both)
    from_capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(Text)
    cause: Mapped[str] = mapped_column(Text)
    start_time: Mapped[float] = mapped_column(Float)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    status_code: Mapped[str] = mapped_column(String(16), index=True)
    status_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    not_scaled_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


# Images registered with `moorage image add`: the environment and command that stand in for an image URI.
class ImageRow(Base):
    __tablename__ = "images"

    uri: Mapped[str] = mapped_column(String(2048), primary_key=True)
    source: Mapped[str] = mapped_column(Text)  # "Dockerfile /path", "requirements /path" or "command line"
    python: Mapped[str] = mapped_column(String(16))  # X.Y the environment is built with
    python_note: Mapped[str | None] = mapped_column(Text, nullable=True)  # an explicit --python override
    requirements: Mapped[list[str]] = mapped_column(JSON)
    # the command as registered, and whether it runs its own HTTP server (else: the built-in runtime)
    command: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    own_server: Mapped[bool] = mapped_column(Boolean)
    environment: Mapped[dict[str, str]] = mapped_column(JSON)
    dropped: Mapped[list[str]] = mapped_column(JSON)  # requirements left out (model servers never run)
    registered_at: Mapped[float] = mapped_column(Float)


class RouteRow(Base):
    """An endpoint's route as the reconciling server has it (variants, weights, worker addresses), so the
    other servers sharing the database route its traffic the same way (moorage/dataplane/route_sync.py)."""

    __tablename__ = "routes"

    endpoint_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    published_at: Mapped[float] = mapped_column(Float)


class TrafficRow(Base):
    """One server's running invocation totals for one endpoint variant (moorage/dataplane/traffic_sync.py):
    the server that runs autoscaling adds the other servers' to its own."""

    __tablename__ = "traffic"

    server_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    variant_name: Mapped[str] = mapped_column(String(63), primary_key=True)
    totals: Mapped[dict[str, float]] = mapped_column(JSON)
    reported_at: Mapped[float] = mapped_column(Float)


class InstallationRow(Base):
    """The one row: this installation's random id (every server sharing the database has the same)."""

    __tablename__ = "installation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)


class AsyncRequestRow(Base):
    """One accepted InvokeEndpointAsync request, committed before its 202 and deleted once its output (or
    failure) object is written (moorage/jobs/asynchronous/): the rows are the endpoint's backlog."""

    __tablename__ = "async_requests"
    # a seq is never reused (SQLite would reuse the highest after a delete); the dispatcher asks for an
    # endpoint's oldest rows by seq
    __table_args__ = (
        Index("ix_async_requests_endpoint_seq", "endpoint_name", "seq"),
        {"sqlite_autoincrement": True},
    )

    # arrival order, the order requests run in
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_name: Mapped[str] = mapped_column(String(63))
    inference_id: Mapped[str] = mapped_column(String(64))
    # the request's own name for its objects (a UUID drawn at acceptance; the InferenceId may be reused)
    output_id: Mapped[str] = mapped_column(String(36))
    # where the payload is (s3://, file://, a path), or the inline Body itself (at most 128,000 bytes)
    input_location: Mapped[str | None] = mapped_column(Text, nullable=True)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    content_type: Mapped[str | None] = mapped_column(Text, nullable=True)
    accept: Mapped[str | None] = mapped_column(Text, nullable=True)
    custom_attributes: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_location: Mapped[str] = mapped_column(Text)
    failure_location: Mapped[str] = mapped_column(Text)
    # the endpoint config's NotificationConfig when the request was accepted (None: no notifications)
    notification: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    accepted_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)  # accepted_at + RequestTTLSeconds
    invocation_timeout: Mapped[float] = mapped_column(Float)  # InvocationTimeoutSeconds


class TransformJobRow(Base):
    """A batch transform job (moorage/control/transform_jobs.py); rows are never deleted, so a name stays
    taken (case-insensitively, as on AWS). Its input objects are TransformJobObjectRow rows, so a job
    interrupted by a restart resumes without redoing them (moorage/jobs/transform/runner.py)."""

    __tablename__ = "transform_jobs"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    name_key: Mapped[str] = mapped_column(String(63), unique=True, index=True)  # name.lower()
    arn: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), index=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the CreateTransformJob members, Tags aside
    model: Mapped[dict[str, Any]] = mapped_column(JSON)  # the model as it was when the job was created
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    creation_time: Mapped[float] = mapped_column(Float)
    last_modified_time: Mapped[float] = mapped_column(Float)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    records_done: Mapped[int] = mapped_column(Integer, default=0)
    records_total: Mapped[int] = mapped_column(Integer, default=0)
    objects_done: Mapped[int] = mapped_column(Integer, default=0)
    objects_total: Mapped[int] = mapped_column(Integer, default=0)


class TransformJobObjectRow(Base):
    """One input object of a transform job, in input order, listed once when the job first starts (a
    resumed job works on the same objects). Each object's end is its own row update, so objects that
    finish at once never overwrite each other."""

    __tablename__ = "transform_job_objects"

    job: Mapped[str] = mapped_column(String(63), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    output: Mapped[str] = mapped_column(Text)  # where its output goes
    state: Mapped[str] = mapped_column(String(16))  # Pending | Done | Failed
    records: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


# CloudWatch alarms on Moorage's own metrics (moorage/monitoring/): the subset SageMaker users set up for
# deployment guardrails. Evaluated by the server that reconciles; any server answers the API.
class AlarmRow(Base):
    __tablename__ = "alarms"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    arn: Mapped[str] = mapped_column(String(2048))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the accepted PutMetricAlarm members
    state: Mapped[str] = mapped_column(String(32))  # OK | ALARM | INSUFFICIENT_DATA
    state_reason: Mapped[str] = mapped_column(Text)
    state_reason_data: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON text, as AWS gives it
    state_updated: Mapped[float] = mapped_column(Float)  # StateUpdatedTimestamp
    state_transitioned: Mapped[float] = mapped_column(Float)  # StateTransitionedTimestamp
    configuration_updated: Mapped[float] = mapped_column(Float)  # AlarmConfigurationUpdatedTimestamp
    tags: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class AlarmHistoryRow(Base):
    """DescribeAlarmHistory's items: configuration updates and state changes, oldest pruned first."""

    __tablename__ = "alarm_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_name: Mapped[str] = mapped_column(String(255), index=True)
    timestamp: Mapped[float] = mapped_column(Float, index=True)
    item_type: Mapped[str] = mapped_column(String(32))  # ConfigurationUpdate | StateUpdate | Action
    summary: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text)  # HistoryData: JSON text


class MetricSampleRow(Base):
    """One interval of one metric of one endpoint variant as one server recorded it (moorage/monitoring/
    history.py): CloudWatch's GetMetricStatistics, GetMetricData and alarms add up every server's rows.
    Rows older than an hour are rolled up into one per minute; older than the retention, deleted."""

    __tablename__ = "metric_samples"
    __table_args__ = (
        Index(
            "ix_metric_samples_metric", "namespace", "metric_name", "endpoint_name", "variant_name", "start"
        ),
        Index("ix_metric_samples_start", "start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(64))
    metric_name: Mapped[str] = mapped_column(String(64))
    endpoint_name: Mapped[str] = mapped_column(String(63))
    variant_name: Mapped[str] = mapped_column(String(63))
    start: Mapped[float] = mapped_column(Float)  # epoch seconds, a multiple of `seconds`
    seconds: Mapped[float] = mapped_column(Float)  # the interval: the resolution, or 60 once rolled up
    count: Mapped[int] = mapped_column(Integer)  # SampleCount
    total: Mapped[float] = mapped_column(Float)  # Sum
    minimum: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)
    # values per histogram bucket (latencies, utilization), the metric's bounds; None: no histogram
    buckets: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
