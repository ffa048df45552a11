"""Data capture's tap (moorage/dataplane/taps.py): samples a variant's requests at the config's
InitialSamplingPercentage and hands the answered ones to this server's writer (writer.py).

On the request path an unsampled request costs one random draw; a sampled one also one append to the
writer's list of pending requests (the tap, the invocation and its future): nothing is built
and no callback added. The writer takes the answered ones from that list on the loop every few tens of
milliseconds and hands them to the capture process, which builds and writes the records (writer.py,
process.py). Requests that end in an
error (ModelError, a timeout, a lost instance, no instance ready) are not captured: SageMaker's records
have no place for an error, and Model Monitor reads them as the model's answers.

Shadow variants have taps of their own, called with the copy's answer (moorage/fleet/taps.py), so their
records are written under their own variant name. On a server that does not reconcile the tap is rebuilt
from `settings()` (TAP_KINDS), and captures what that server serves."""

from __future__ import annotations

import asyncio
import logging
import random
from time import time
from typing import TYPE_CHECKING, Any

from moorage.capture.config import CaptureSpec
from moorage.capture.records import Target
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
        self.spec = spec = CaptureSpec.of(config)
        self.writer = writer
        self.capture_input = spec.capture_input
        self.capture_output = spec.capture_output
        # without a writer nothing is sampled
        self.fraction = spec.percentage / 100 if writer is not None else 0.0
        self.number = (
            writer.register(Target(spec.destination, endpoint, variant, spec.csv_types, spec.json_types))
            if writer is not None
            else 0
        )
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
            self.writer.pending.append((self, inv, future))  # type: ignore[union-attr]

    def answered(
        self,
        body: bytes,
        content_type: bytes | None,
        response: WorkerResponse,
        inference_id: bytes | None,
        custom_attributes: bytes | None,
    ) -> None:
        """A request answered outside the real-time path (asynchronous inference): sampled the same way."""
        if self.draw() < self.fraction and self.writer is not None:
            output = self.capture_output
            self.writer.answered(
                self,
                (
                    self.number,
                    time(),
                    body if self.capture_input else None,
                    content_type,
                    response.body if output else None,
                    response.headers if output else None,
                    inference_id,
                    custom_attributes,
                ),
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
