"""The JSON an asynchronous endpoint publishes to its SuccessTopic or ErrorTopic, in SageMaker's shape
(the Message of the SNS notification a webhook receives; moorage/jobs/notify.py)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from moorage.jobs.notify import iso_time
from moorage.store.tables import AsyncRequestRow

# SageMaker includes the inference response in a notification only up to this size
MAX_INCLUDED_RESPONSE = 128 * 1024


def _common(row: AsyncRequestRow, region: str, status: str) -> dict[str, Any]:
    request: dict[str, Any] = {"endpointName": row.endpoint_name}
    if row.content_type is not None:
        request["contentType"] = row.content_type
    if row.input_location is not None:
        request["inputLocation"] = row.input_location
    if row.accept is not None:
        request["accept"] = row.accept
    if row.custom_attributes is not None:
        request["customAttributes"] = row.custom_attributes
    return {
        "awsRegion": region,
        "eventTime": iso_time(time.time()),
        "receivedTime": iso_time(row.accepted_at),
        "invocationStatus": status,
        "requestParameters": request,
        "inferenceId": row.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


def success_message(row: AsyncRequestRow, region: str, content_type: str | None, body: bytes | None) -> str:
    """`body` is the response when the topic is in IncludeInferenceResponseIn (left out above 128 KB)."""
    message = _common(row, region, "Completed")
    response: dict[str, Any] = {"outputLocation": row.output_location}
    if content_type is not None:
        response["contentType"] = content_type
    if body is not None and len(body) <= MAX_INCLUDED_RESPONSE:
        try:
            response["responseBody"] = {"content": body.decode("utf-8"), "encoding": "UTF-8"}
        except UnicodeDecodeError:
            response["responseBody"] = {"content": base64.b64encode(body).decode(), "encoding": "BASE64"}
    message["responseParameters"] = response
    return json.dumps(message)


def failure_message(row: AsyncRequestRow, region: str, reason: str) -> str:
    message = _common(row, region, "Failed")
    message["failureReason"] = reason
    message["responseParameters"] = {"contentType": "text/plain", "failureLocation": row.failure_location}
    return json.dumps(message)
