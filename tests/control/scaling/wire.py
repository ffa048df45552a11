"""A real boto3 client whose HTTP requests go to a JsonService in this process: botocore serialises the
request and parses the answer (errors into their modelled classes) exactly as against a server.

Operations are coroutines; the client is synchronous, so each answer is awaited on an event loop of its
own in a helper thread (a test may itself be running on a loop, which cannot be blocked on)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from moorage.api.json_service import JsonService
from moorage.http.responses import Response


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def in_process_client(service: JsonService, region: str = "us-west-2") -> Any:
    client = boto3.client(
        "application-autoscaling",
        endpoint_url="http://moorage.invalid",
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        headers = {
            name.lower().encode("latin-1"): value if isinstance(value, bytes) else value.encode("latin-1")
            for name, value in request.headers.items()
        }
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        response = _answer(service(headers, body))
        reply: dict[str, str] = {"content-type": response.content_type.decode()}
        for line in response.headers.decode("latin-1").split("\r\n"):
            if line:
                name, _colon, value = line.partition(":")
                reply[name.strip().lower()] = value.strip()
        return AWSResponse(request.url, response.status, reply, _Body(response.body))

    client.meta.events.register("before-send.application-autoscaling", send)
    return client


def _answer(response: Response | Awaitable[Response]) -> Response:
    if isinstance(response, Response):
        return response

    async def answered() -> Response:
        return await response

    with ThreadPoolExecutor(1, thread_name_prefix="test-wire") as thread:
        return thread.submit(asyncio.run, answered()).result()
