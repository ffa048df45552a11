"""Data capture's tap (moorage/dataplane/taps.py): samples a variant's requests at the config's
InitialSamplingPercentage and hands the answered ones to this server's writer (writer.py).

On the request path a sampled request costs one random draw and one `add_done_callback`; an unsampled one
the draw only. The callback runs when the answer is in, before the caller's response is written, and only
queues the raw bytes: the record is built and written on the writer's thread. Requests that end in an
error (ModelError, a timeout, a lost instance, no instance ready) are not captured: SageMaker's records
have no place for an error, and Model Monitor reads them as the model's answers.

Shadow variants have taps of their own, called with the copy's answer (moorage/fleet/taps.py), so their
records are written under their own variant name. On a server that does not reconcile the tap is rebuilt
from `settings()` (TAP_KINDS), and captures what that server serves."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from moorage.capture.config import CaptureSpec
from moorage.capture.records import Captured
from moorage.capture.writer import CaptureWriter, current_writer
from moorage.dataplane.connection import WorkerResponse
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute
from moorage.dataplane.taps import TAP_KINDS, Tap, Taps

if TYPE_CHECKING:  # moorage.fleet imports this module
    from moorage.dataplane.invoke import Invocation, InvocationResult
    from moorage.fleet.settings import FleetContext

log = logging.getLogger("moorage.capture")


class CaptureTap:
    """Captures a sample of one variant's answered requests."""

    kind = "capture"

    def __init__(
        self,
        endpoint: str,
        variant: str,
        config: dict[str, Any],
        writer: CaptureWriter | None,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.variant = variant
        self.config = config
        self.spec = CaptureSpec.of(config)
        self.writer = writer
        self.fraction = self.spec.percentage / 100
        # its own random source: routing's (seedable) draws stay as they were
        self.draw = (rng or random.Random()).random

    def observe(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        table: RoutingTable,
    ) -> None:
        if self.draw() < self.fraction:
            future.add_done_callback(partial(self._answered, inv))

    def _answered(self, inv: Invocation, future: asyncio.Future[InvocationResult]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self._submit(
            inv.body, inv.content_type, future.result().response, inv.inference_id, inv.custom_attributes
        )

    def answered(
        self,
        body: bytes,
        content_type: bytes | None,
        response: WorkerResponse,
        inference_id: bytes | None,
        custom_attributes: bytes | None,
    ) -> None:
        """A request answered outside the real-time path (asynchronous inference): sampled the same way."""
        if self.draw() < self.fraction:
            self._submit(body, content_type, response, inference_id, custom_attributes)

    def _submit(
        self,
        body: bytes,
        content_type: bytes | None,
        response: WorkerResponse,
        inference_id: bytes | None,
        custom_attributes: bytes | None,
    ) -> None:
        writer = self.writer
        if writer is None:
            return
        spec = self.spec
        writer.submit(
            Captured(
                spec,
                self.endpoint,
                self.variant,
                time.time(),
                body if spec.capture_input else None,
                content_type,
                response.body if spec.capture_output else None,
                response.header(b"content-type"),
                inference_id,
                custom_attributes,
            )
        )

    def settings(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "variant": self.variant, "config": self.config}


def capture_tap(
    endpoint: str, variant: VariantRoute, config: dict[str, Any], ctx: FleetContext
) -> Tap | None:
    """The tap that captures `variant`'s requests and responses, if the config asks for it: none when
    capture is off or samples nothing (DescribeEndpoint still reports the config as it is)."""
    capture = config.get("DataCaptureConfig")
    if not capture:
        return None
    spec = CaptureSpec.of(capture)
    if not spec.enabled or spec.percentage <= 0:
        return None
    writer = current_writer()
    if writer is None:
        log.warning("endpoint %s asks for data capture, but this process has no capture writer", endpoint)
        return None
    return CaptureTap(endpoint, variant.name, capture, writer)


def capture_answer(
    variant: VariantRoute,
    body: bytes,
    content_type: str | None,
    response: WorkerResponse,
    inference_id: str | None = None,
    custom_attributes: str | None = None,
) -> None:
    """Capture a request of `variant` answered by the asynchronous path, if its config captures."""
    tap = _capture_tap_of(variant.tap)
    if tap is not None:
        tap.answered(body, _header(content_type), response, _header(inference_id), _header(custom_attributes))


def _capture_tap_of(tap: Tap | None) -> CaptureTap | None:
    if isinstance(tap, CaptureTap):
        return tap
    if isinstance(tap, Taps):
        return next((part for part in tap.taps if isinstance(part, CaptureTap)), None)
    return None


def _header(value: str | None) -> bytes | None:
    return value.encode("latin-1") if value is not None else None


def _rebuild(settings: dict[str, Any], route: EndpointRoute) -> Tap:
    """The same tap on another server, writing through that server's writer."""
    return CaptureTap(settings["endpoint"], settings["variant"], settings["config"], current_writer())


TAP_KINDS[CaptureTap.kind] = _rebuild
