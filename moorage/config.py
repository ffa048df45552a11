"""Server settings, resolved once at start-up (nothing is read from the environment at import time)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from moorage.fleet.settings import FleetSettings
from moorage.jobs.notify import ENV_VAR as WEBHOOKS_ENV_VAR
from moorage.jobs.notify import parse_webhooks


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _default_max_instances() -> int:
    return max(16, 4 * (os.cpu_count() or 1))


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _deployment_time_scale() -> float:
    scale = _env_float("MOORAGE_DEPLOYMENT_TIME_SCALE", 1.0)
    if not 0 < scale < float("inf"):
        raise ValueError(
            f"MOORAGE_DEPLOYMENT_TIME_SCALE is {scale}; it must be a positive number (1.0: real time, "
            "0.01: a one-hour deployment plan in 36 s)."
        )
    return scale


def _alarm_min_period() -> int:
    seconds = _env_int("MOORAGE_ALARM_MIN_PERIOD_SECONDS", 10)
    if seconds < 1:
        raise ValueError(
            f"MOORAGE_ALARM_MIN_PERIOD_SECONDS is {seconds}; it must be a whole number of seconds, 1 or more "
            "(10: CloudWatch's periods only)."
        )
    return seconds


@dataclass(frozen=True)
class Settings:
    state_dir: Path = Path(".moorage")
    host: str = "127.0.0.1"
    port: int = 7070
    account_id: str = "123456789012"
    default_region: str = "us-east-1"
    # the state store: SQLite in state_dir unless a postgresql:// URL is given (README, PostgreSQL)
    database_url: str | None = field(default_factory=lambda: os.environ.get("MOORAGE_DATABASE_URL") or None)
    # SigV4: the accepted keys (~/.aws/credentials format); None accepts any signature, which is
    # allowed on a loopback address only, or anywhere with insecure_no_auth (docs/security.md)
    credentials_file: Path | None = None
    insecure_no_auth: bool = False
    max_unpacked_bytes: int = field(
        default_factory=lambda: _env_int("MOORAGE_MAX_UNPACKED_BYTES", 32 * 1024**3)
    )
    stop_grace_seconds: float = field(default_factory=lambda: _env_float("MOORAGE_STOP_GRACE_SECONDS", 30.0))
    health_interval_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_HEALTH_INTERVAL_SECONDS", 5.0)
    )
    health_timeout_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_HEALTH_TIMEOUT_SECONDS", 2.0)
    )
    health_failures: int = field(default_factory=lambda: _env_int("MOORAGE_HEALTH_FAILURES", 2))
    backoff_max_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_RESTART_BACKOFF_MAX_SECONDS", 60.0)
    )
    # GET /metrics and the counters behind it (MOORAGE_METRICS=0 turns both off)
    metrics: bool = field(
        default_factory=lambda: os.environ.get("MOORAGE_METRICS", "1") not in ("0", "off", "false")
    )
    # seeds the weighted variant choice, for a reproducible traffic split (tests, demos)
    routing_seed: int | None = field(
        default_factory=lambda: (
            int(os.environ["MOORAGE_ROUTING_SEED"]) if os.environ.get("MOORAGE_ROUTING_SEED") else None
        )
    )
    # service quotas on instances (moorage/control/quotas.py)
    max_instances: int = field(
        default_factory=lambda: _env_int("MOORAGE_MAX_INSTANCES", _default_max_instances())
    )
    max_instances_per_endpoint: int = field(  # 0: half of max_instances
        default_factory=lambda: _env_int("MOORAGE_MAX_INSTANCES_PER_ENDPOINT", 0)
    )
    max_instances_per_type: str = field(
        default_factory=lambda: os.environ.get("MOORAGE_MAX_INSTANCES_PER_TYPE", "")
    )
    # the largest control-plane (POST /) request body; see docs/behaviour.md "Limits"
    max_control_body_bytes: int = field(
        default_factory=lambda: _env_int("MOORAGE_MAX_CONTROL_BODY_BYTES", 1024 * 1024)
    )
    # client connections: idle keep-alive ones close after this; a request must arrive within that
    idle_timeout_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_IDLE_TIMEOUT_SECONDS", 60.0)
    )
    request_timeout_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_REQUEST_TIMEOUT_SECONDS", 60.0)
    )

    # several servers on one PostgreSQL (docs/cluster.md): how often a server that does not reconcile
    # tries to take the lead, how often routes are published and followed, how often the one that
    # reconciles reads the endpoint rows when nothing woke it
    leader_retry_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_LEADER_RETRY_SECONDS", 2.0)
    )
    route_sync_seconds: float = field(default_factory=lambda: _env_float("MOORAGE_ROUTE_SYNC_SECONDS", 0.5))
    reconcile_poll_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_RECONCILE_POLL_SECONDS", 1.0)
    )

    # where instances run (moorage/compute/providers.py): "local" processes, or actors on a Ray cluster
    compute: str = "local"
    # the Ray provider (docs/cluster.md): the cluster, this server's address on its network, each node's
    # model cache, and the bounds on connecting and on waiting for room for an instance
    ray_address: str = "auto"
    ray_node_address: str | None = None
    ray_cache_dir: Path | None = field(
        default_factory=lambda: (
            Path(os.environ["MOORAGE_RAY_CACHE_DIR"]) if os.environ.get("MOORAGE_RAY_CACHE_DIR") else None
        )
    )
    ray_connect_timeout_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_RAY_CONNECT_TIMEOUT_SECONDS", 15.0)
    )
    ray_placement_timeout_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_RAY_PLACEMENT_TIMEOUT_SECONDS", 60.0)
    )
    # a serverless variant with no ProvisionedConcurrency stops its instance after this long without a
    # request (docs/serverless.md)
    serverless_idle_seconds: float = field(
        default_factory=lambda: _env_float("MOORAGE_SERVERLESS_IDLE_SECONDS", 300.0)
    )
    # multiplies the waits and timeout of every DeploymentConfig (docs/deployment.md): 0.01 rehearses a
    # one-hour guardrail plan in 36 s
    deployment_time_scale: float = field(default_factory=_deployment_time_scale)
    # the shortest alarm Period (docs/cloudwatch.md): below 10, any period from it up is accepted
    alarm_min_period_seconds: int = field(default_factory=_alarm_min_period)
    # SNS topic ARN -> HTTP webhook that receives what is published to it (docs/async.md)
    sns_webhooks: dict[str, str] = field(
        default_factory=lambda: parse_webhooks([os.environ.get(WEBHOOKS_ENV_VAR, "")])
    )
    # with credentials_file, the only folder on disk that an InvokeEndpointAsync InputLocation and a
    # transform job's S3Uri / S3OutputPath may be below (None: only s3://); --local-data-root /
    # MOORAGE_LOCAL_DATA_ROOT; docs/security.md
    local_data_root: Path | None = field(
        default_factory=lambda: Path(root) if (root := os.environ.get("MOORAGE_LOCAL_DATA_ROOT")) else None
    )
    # S3 on the port: the embedded store (default), an external store's URL, or off (docs/s3.md)
    s3_enabled: bool = True
    s3_endpoint: str | None = None

    def fleet(self) -> FleetSettings:
        return FleetSettings(
            stop_grace_seconds=self.stop_grace_seconds,
            health_interval_seconds=self.health_interval_seconds,
            health_timeout_seconds=self.health_timeout_seconds,
            health_failures=self.health_failures,
            backoff_max_seconds=self.backoff_max_seconds,
            cache_dir=self.cache_dir,
            max_unpacked_bytes=self.max_unpacked_bytes,
            handover_seconds=2 * self.route_sync_seconds + 1.0 if self.database_url else 0.0,
            serverless_idle_seconds=self.serverless_idle_seconds,
            deployment_time_scale=self.deployment_time_scale,
        )

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"
