"""SNS topics as HTTP webhooks: the server's configuration maps a topic ARN to a URL
(`moorage serve --sns-webhook ARN=URL`, MOORAGE_SNS_WEBHOOKS), and a message published to the topic is
POSTed there as SNS delivers to an HTTP subscription: a Notification envelope whose Message is the
message text.

Delivery runs in the background with retries and back-off; a webhook that fails is logged and given up
after the last attempt, and never holds back the work that published the message: posts run on a few
threads of their own (never the event loop's default executor, which the server's other work needs), and
at most MAX_PENDING deliveries are kept (past that the oldest is dropped, with a log line)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger("moorage.notify")
ATTEMPTS = 6
FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 60.0
TIMEOUT_SECONDS = 15.0
ENV_VAR = "MOORAGE_SNS_WEBHOOKS"
THREADS = 4  # webhook posts at once; a webhook that never answers holds at most these
MAX_PENDING = 10_000  # deliveries kept (waiting, posting or between attempts)


class WebhookConfigError(ValueError):
    """A mapping that is not ARN=URL; str() says which."""


def parse_webhooks(items: list[str]) -> dict[str, str]:
    """`ARN=URL` items (each may hold several, separated by commas or whitespace) → {ARN: URL}."""
    webhooks: dict[str, str] = {}
    for item in items:
        for part in item.replace(",", " ").split():
            arn, sep, url = part.partition("=")
            if not sep or not arn.startswith("arn:") or ":sns:" not in arn:
                raise WebhookConfigError(
                    f"{part!r} is not TOPIC_ARN=URL (e.g. arn:aws:sns:us-east-1:123456789012:done=http://127.0.0.1:9000/hook)"
                )
            if not url.startswith(("http://", "https://")):
                raise WebhookConfigError(f"{part!r}: the webhook must be an http:// or https:// URL")
            webhooks[arn] = url
    return webhooks


@dataclass(frozen=True)
class Delivery:
    topic: str
    url: str
    message: str
    message_id: str
    timestamp: str

    def envelope(self) -> bytes:
        """The JSON an SNS HTTP subscription receives. Unsigned: there is no SNS key to sign with."""
        return json.dumps(
            {
                "Type": "Notification",
                "MessageId": self.message_id,
                "TopicArn": self.topic,
                "Message": self.message,
                "Timestamp": self.timestamp,
                "SignatureVersion": "1",
                "Signature": "",
                "SigningCertURL": "",
                "UnsubscribeURL": "",
            }
        ).encode()


class Notifier:
    """Publishes to the configured topics; `pending()` tells how many deliveries are under way."""

    def __init__(
        self, webhooks: Mapping[str, str], threads: int = THREADS, max_pending: int = MAX_PENDING
    ) -> None:
        self.webhooks = dict(webhooks)
        self.max_pending = max_pending
        # oldest first, so the oldest is the one dropped past max_pending
        self._tasks: OrderedDict[asyncio.Task[None], Delivery] = OrderedDict()
        self._unmapped: set[str] = set()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sns-webhook")

    def publish(self, topic: str, message: str) -> None:
        """Deliver `message` to the topic's webhook in the background (a topic without one is logged)."""
        url = self.webhooks.get(topic)
        if url is None:
            if topic not in self._unmapped:
                self._unmapped.add(topic)
                log.warning(
                    "no webhook for SNS topic %s: its notifications are dropped; map it with "
                    "--sns-webhook %s=URL",
                    topic,
                    topic,
                )
            return
        delivery = Delivery(topic, url, message, str(uuid.uuid4()), iso_time(time.time()))
        task = asyncio.get_running_loop().create_task(self._deliver(delivery), name="sns-webhook")
        self._tasks[task] = delivery
        task.add_done_callback(lambda done: self._tasks.pop(done, None))
        while len(self._tasks) > self.max_pending:
            oldest, dropped = self._tasks.popitem(last=False)
            oldest.cancel()
            log.error(
                "more than %d SNS deliveries under way (webhooks slow or down): dropped message %s to %s",
                self.max_pending,
                dropped.message_id,
                dropped.url,
            )

    def pending(self) -> int:
        return len(self._tasks)

    async def _deliver(self, delivery: Delivery) -> None:
        delay = FIRST_DELAY_SECONDS
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await asyncio.get_running_loop().run_in_executor(self._executor, _post, delivery)
                return
            except (OSError, urllib.error.URLError) as exc:
                if attempt == ATTEMPTS:
                    log.error(
                        "gave up delivering SNS message %s to %s after %d attempts: %s",
                        delivery.message_id,
                        delivery.url,
                        ATTEMPTS,
                        exc,
                    )
                    return
                log.info("webhook %s failed (%s); retrying in %g s", delivery.url, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY_SECONDS)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # posts already on a thread end at their time-out; nobody waits for them
        self._executor.shutdown(wait=False, cancel_futures=True)


def _post(delivery: Delivery) -> None:
    request = urllib.request.Request(
        delivery.url,
        data=delivery.envelope(),
        method="POST",
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": delivery.message_id,
            "x-amz-sns-topic-arn": delivery.topic,
        },
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        if not 200 <= response.status < 300:
            raise OSError(f"HTTP {response.status}")


def iso_time(when: float) -> str:
    """2024-01-02T03:04:05.678Z, the way SNS and SageMaker write times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when * 1000) % 1000:03d}Z"
