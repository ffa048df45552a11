"""An endpoint config's AsyncInferenceConfig: what CreateEndpointConfig checks beyond the shape, and the
settings the data plane keeps in an endpoint's route (so accepting a request never reads the database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moorage.api.errors import ValidationException

SUCCESS_TOPIC = "SUCCESS_NOTIFICATION_TOPIC"
ERROR_TOPIC = "ERROR_NOTIFICATION_TOPIC"
_TOPIC_MEMBERS = {SUCCESS_TOPIC: "SuccessTopic", ERROR_TOPIC: "ErrorTopic"}


@dataclass(frozen=True)
class AsyncSettings:
    """What an asynchronous endpoint does with a request, as its config says."""

    output_path: str
    failure_path: str | None  # None: failures go beside the outputs
    notification: dict[str, Any] | None  # NotificationConfig as accepted
    max_concurrent: int | None  # MaxConcurrentInvocationsPerInstance; None: one per worker

    @property
    def failure_root(self) -> str:
        """Where failures are written: S3FailurePath, else beside the outputs (S3OutputPath)."""
        return self.failure_path or self.output_path

    @classmethod
    def of(cls, config: dict[str, Any]) -> AsyncSettings:
        output = config.get("OutputConfig") or {}
        notification = output.get("NotificationConfig") or None
        client = config.get("ClientConfig") or {}
        return cls(
            output_path=str(output.get("S3OutputPath") or ""),
            failure_path=output.get("S3FailurePath") or None,
            notification=dict(notification) if notification else None,
            max_concurrent=client.get("MaxConcurrentInvocationsPerInstance"),
        )


def check_async_config(params: dict[str, Any]) -> None:
    """Refuse, at CreateEndpointConfig, an AsyncInferenceConfig that could never deliver a result."""
    config = params.get("AsyncInferenceConfig")
    if config is None:
        return
    output = config.get("OutputConfig") or {}
    if not output.get("S3OutputPath"):
        raise ValidationException(
            "AsyncInferenceConfig.OutputConfig.S3OutputPath is required: it is where the results of "
            "InvokeEndpointAsync are written (s3://bucket/prefix, or file:///path on this server)."
        )
    for member in ("S3OutputPath", "S3FailurePath"):
        path = output.get(member)
        if path and not (path.isascii() and path.isprintable()):
            raise ValidationException(
                f"AsyncInferenceConfig.OutputConfig.{member} {path!r} has characters that are not "
                "printable ASCII; the locations of results travel in HTTP headers "
                "(X-Amzn-SageMaker-OutputLocation). Use an ASCII bucket and prefix."
            )
    notification = output.get("NotificationConfig") or {}
    for topic in notification.get("IncludeInferenceResponseIn") or []:
        member = _TOPIC_MEMBERS[topic]
        if not notification.get(member):
            raise ValidationException(
                f"AsyncInferenceConfig.OutputConfig.NotificationConfig.IncludeInferenceResponseIn names "
                f"{topic}, but {member} is not set. Set {member} or remove {topic}."
            )
