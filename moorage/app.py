"""The front door: one port, control plane at `POST /`, runtime under `/endpoints/`.

Start-up opens (and migrates) the store and brings back every endpoint the store says is InService
or Updating before the port is opened (Creating and Deleting ones resume in the background);
shutdown stops accepting, drains connections and stops every instance."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Coroutine, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import select

from moorage.api import control, routing, scaling
from moorage.api.cloudwatch import RPC_PATH_PREFIX, TARGET_HEADER_PREFIX
from moorage.api.cloudwatch import SIGNING_NAME as CLOUDWATCH_SIGNING_NAME
from moorage.api.cloudwatch import TARGET_PREFIX as CLOUDWATCH_TARGET
from moorage.api.cloudwatch.service import CloudWatchApi
from moorage.api.http import refusal_response
from moorage.api.json_service import JsonService, JsonServices
from moorage.api.runtime import RuntimeApi
from moorage.api.runtime_async import AsyncRuntimeApi
from moorage.api.sts import StsApi
from moorage.auth import AuthFailure, SigV4Verifier, load_keyring
from moorage.auth.errors import auth_error_response
from moorage.auth.keys import the_account
from moorage.capture.settings import CaptureSettings
from moorage.capture.writer import CaptureWriter
from moorage.clock import SystemClock
from moorage.compute.base import Instance, InstanceProvider
from moorage.compute.providers import make_provider
from moorage.config import Settings
from moorage.control.endpoints import Endpoints
from moorage.control.leadership import AdvisoryLock, Leadership, SoleServer
from moorage.control.quotas import InstanceQuotas
from moorage.control.reconciler import Reconciler, VariantState
from moorage.control.scaling.engine import ScalingEngine
from moorage.control.scaling.settings import ScalingSettings
from moorage.control.scaling_port import FleetScalingPort
from moorage.control.transform_jobs import TransformJobs
from moorage.dataplane.invoke import MAX_PAYLOAD_BYTES
from moorage.dataplane.route_sync import RouteFollower, RoutePublisher
from moorage.dataplane.routes import RoutingTable
from moorage.dataplane.serverless_sync import ServerlessDemand
from moorage.dataplane.stats import StatsBook
from moorage.dataplane.traffic_sync import TrafficReporter
from moorage.fleet import EndpointFleet, FleetContext
from moorage.fleet.serverless import apply_demand
from moorage.http.responses import Response, json_response
from moorage.http.server import HttpServer, StreamHandler
from moorage.images import ImageRegistry
from moorage.jobs.asynchronous.commits import GroupCommit
from moorage.jobs.asynchronous.dispatcher import Dispatcher
from moorage.jobs.asynchronous.metrics import backlog_metrics
from moorage.jobs.asynchronous.queue import insert_requests
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.notify import Notifier
from moorage.jobs.transform.runner import TransformRunner
from moorage.logs import EndpointLogs
from moorage.metrics.exposition import CONTENT_TYPE as METRICS_CONTENT_TYPE
from moorage.metrics.exposition import FleetCollector, registry, render
from moorage.metrics.usage import UsageMeter
from moorage.monitoring.alarms import Alarms
from moorage.monitoring.evaluation import AlarmEvaluator, evaluation_seconds
from moorage.monitoring.history import HistorySettings, MetricRecorder
from moorage.monitoring.metric_api import MetricApi
from moorage.monitoring.operations import operations as cloudwatch_operations
from moorage.s3store.passthrough import Refusal, S3PassThrough, s3_refusal
from moorage.s3store.service import S3Service
from moorage.store import Store, open_store
from moorage.store.tables import InstallationRow

log = logging.getLogger("moorage")
# how long instances an earlier server left running for a deployment the rows still need may wait to be
# adopted (a model may take minutes to prepare) before they are stopped
ADOPT_GRACE_SECONDS = 600.0
SOLE_SERVER_POLL_SECONDS = 30.0
_PING = json_response({"status": "Healthy"})
RUNTIME_PREFIX = b"/endpoints/"
_NOT_FOUND = "Not found. This port serves the SageMaker API (POST /) and InvokeEndpoint."


class MoorageApp:
    """Routes a parsed request to the control or runtime adapter."""

    def __init__(self, settings: Settings) -> None:
        keys = None
        if settings.credentials_file is not None:
            keys = load_keyring(settings.credentials_file, settings.account_id)
            # the keys' account is the one ARNs are minted in
            account = the_account(keys, settings.credentials_file)
            settings = dataclasses.replace(settings, account_id=account)
        self.settings = settings
        self.clock = SystemClock()
        self.table = RoutingTable(settings.routing_seed)
        self.runtime = RuntimeApi(self.table, settings.account_id, timed=settings.metrics)
        self.control: JsonServices | None = None
        self.cloudwatch: CloudWatchApi | None = None
        self.store: Store | None = None
        self.reconciler: Reconciler | None = None
        self.provider: InstanceProvider | None = None
        self.leadership: Leadership | None = None
        self.follower: RouteFollower | None = None
        self.demand: ServerlessDemand | None = None  # several servers: serverless requests at the others
        self._run_dir: Path | None = None
        self.stats = StatsBook() if settings.metrics else None
        self.usage = UsageMeter(self.clock, self._instances)
        self.collector = FleetCollector(self._fleets, self.usage)
        self.metrics = registry(self.collector) if settings.metrics else None
        # CloudWatch's metric history (every server writes its own) and alarms (evaluated by the leader)
        self.history_settings = HistorySettings.from_environ(os.environ)
        self.alarm_seconds = evaluation_seconds(os.environ)
        self.history: MetricRecorder | None = None
        # asynchronous inference: the queue is written by every server, run by the one that reconciles
        self.notifier = Notifier(settings.sns_webhooks)
        self.dispatcher: Dispatcher | None = None
        self.async_queue: GroupCommit[dict[str, Any]] | None = None
        self._background: list[asyncio.Task[None]] = []
        self.scaling: ScalingEngine | None = None
        self.transforms: TransformRunner | None = None  # batch transform jobs, while this server leads
        self.verifier = SigV4Verifier(keys) if keys is not None else None  # None: signatures not checked
        self.sts = StsApi(settings.account_id, settings.default_region, keys)
        self.s3_service = S3Service(settings)
        self.s3: S3PassThrough | None = None
        self.capture: CaptureWriter | None = None  # data capture's writer (moorage/capture/)

    def __call__(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        """A request read whole; S3 requests never get here (see `streams`). moorage/api/routing.py
        has the rule for which service a request is for."""
        path = url.partition(b"?")[0]
        if path.startswith(RUNTIME_PREFIX):
            return self.runtime(method, path, headers, body)
        if path == b"/":
            if b"x-amz-target" not in headers:
                query = routing.query_service(method, url, headers, body)
                if query == routing.STS:
                    return self.sts(method, url, headers, body, None)
                if query == routing.MONITORING and self.cloudwatch is not None:
                    return self.cloudwatch.query(method, url, headers, body)
            elif self.cloudwatch is not None and headers[b"x-amz-target"].startswith(TARGET_HEADER_PREFIX):
                return self.cloudwatch.json(method, url, headers, body)
            if method == b"POST" and self.control is not None:
                return self.control(headers, body)
        if path.startswith(RPC_PATH_PREFIX) and self.cloudwatch is not None:
            return self.cloudwatch.cbor(method, url, headers, body)
        if path == b"/ping":
            return _PING
        if path == b"/metrics" and self.metrics is not None and method in (b"GET", b"HEAD"):
            return Response(200, render(self.metrics), METRICS_CONTENT_TYPE)
        return refusal_response(404, _NOT_FOUND, runtime=False)

    def streams(self, method: bytes, url: bytes, headers: Mapping[bytes, bytes]) -> StreamHandler | None:
        """S3 requests are passed through as their bytes arrive (the HTTP server asks at the end of
        each head outside /endpoints/)."""
        if not routing.is_s3(method, url, headers):
            return None
        return self._s3_handler(method, url, headers, None)

    def authenticated(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        """`__call__` behind SigV4 verification (moorage serve --credentials): a refusal is in the
        shape of the API the request was for. Unsigned /ping and /metrics stay open."""
        assert self.verifier is not None
        path = url.partition(b"?")[0]
        query = None  # the awsQuery service (STS, CloudWatch) of a query request
        if path.startswith(RUNTIME_PREFIX):
            family = "runtime"
        elif (
            path == b"/"
            and b"x-amz-target" not in headers
            and (query := routing.query_service(method, url, headers, body))
        ):
            family = "query"
        elif path.startswith(RPC_PATH_PREFIX):
            family = "cbor"  # CloudWatch
        elif path in routing.OWN_PATHS and routing.signing_service(url, headers) is None:
            return self(method, url, headers, body)
        else:
            family = "json"
        try:
            caller = self.verifier.verify(method, url, headers, body)
            _check_scope(caller.service, query.decode() if query else _expected_service(family, headers))
        except AuthFailure as failure:
            if family == "cbor":
                return CloudWatchApi.auth_error(failure)
            return auth_error_response(failure, family)
        if query == routing.STS:
            return self.sts(method, url, headers, body, caller)
        return self(method, url, headers, body)

    def authenticated_streams(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes]
    ) -> StreamHandler | None:
        """`streams` behind SigV4 verification; the body hash the client signed is checked as the
        body passes (the store never sees a complete body that does not match)."""
        assert self.verifier is not None
        if not routing.is_s3(method, url, headers):
            return None
        try:
            caller = self.verifier.verify(method, url, headers, None)
            _check_scope(caller.service, "s3")
        except AuthFailure as failure:
            return Refusal(auth_error_response(failure, "s3"), method, headers)
        return self._s3_handler(method, url, headers, caller.payload_sha256)

    def _s3_handler(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], payload_sha256: str | None
    ) -> StreamHandler:
        if self.s3 is None:
            off = self.s3_service.off_reason
            return Refusal.error(501, "NotImplemented", off, method, url, headers)
        return self.s3.handler(method, url, headers, payload_sha256)

    def _fleets(self) -> Iterable[EndpointFleet]:
        """Every fleet running instances, a deployment's new one included (sampled and counted too)."""
        return self.reconciler.every_fleet() if self.reconciler is not None else []

    def _instances(self) -> Iterator[Instance]:
        for fleet in self._fleets():
            for variant in fleet.every_variant:
                for member in variant.members:
                    yield member.instance

    def refusal(self, url: bytes, status: int, message: str) -> Response:
        """A request the HTTP server refuses, answered in the shape of the API it was sent to."""
        runtime = url.startswith(RUNTIME_PREFIX)
        path = url.partition(b"?")[0]
        if path.startswith(RPC_PATH_PREFIX) and self.cloudwatch is not None:
            return self.cloudwatch.refusal(status, message)
        if (
            not runtime and path not in (b"", b"/") and path not in routing.OWN_PATHS
        ):  # only S3 (and CloudWatch's rpc-v2-cbor) have other paths
            return s3_refusal(status, message, path)
        if status == 413:  # over the HTTP server's per-path limit (`prefix_limit` in serve())
            limit = self.settings.max_control_body_bytes
            message = RuntimeApi.TOO_LARGE if runtime else JsonService.too_large_message(limit)
        return refusal_response(status, message, runtime=runtime)

    async def startup(self) -> None:
        settings = self.settings
        self.store = open_store(settings.state_dir, settings.database_url)
        # Unix socket paths must stay short, so instance sockets live in a private temp dir.
        self._run_dir = Path(tempfile.mkdtemp(prefix="moorage-"))
        installation = await self.store.run(_installation, self.store)
        self.provider = make_provider(settings, self._run_dir, installation)
        await self.provider.open()  # a cluster that cannot be reached stops start-up here
        # before endpoints are restored: their model data may be in the store
        self.s3 = await self.s3_service.start()
        logs = EndpointLogs(settings.log_dir)
        fleet = FleetContext(
            provider=self.provider,
            logs=logs,
            clock=self.clock,
            settings=settings.fleet(),
            region=settings.default_region,
            account=settings.account_id,
            stats=self.stats,
            images=ImageRegistry(self.store),
        )
        # alone on its own database, every change comes through this server's API, which wakes the
        # reconciler: the poll is only a safety net there
        poll = settings.reconcile_poll_seconds if self.store.shared else SOLE_SERVER_POLL_SECONDS
        self.reconciler = Reconciler(self.store, self.table, fleet, poll)
        self.demand = ServerlessDemand(self.store, self.table, settings.route_sync_seconds)
        self.follower = RouteFollower(
            self.store, self.table, self.stats, settings.route_sync_seconds, wake=self.demand.wake
        )
        quotas = InstanceQuotas.from_settings(settings)
        endpoints = Endpoints(self.store, self.reconciler, quotas, live=self._variant_states)
        port = FleetScalingPort(self.store, self.reconciler, endpoints, self.usage)
        self.scaling = ScalingEngine(self.store, port, self.clock, ScalingSettings.from_environ(os.environ))
        endpoints.on_delete.append(self.scaling.endpoint_deleted)
        self.dispatcher = Dispatcher(
            self.store, self.table, self.notifier, settings.default_region, logs=logs
        )
        endpoints.on_delete.append(self.dispatcher.endpoint_deleted)
        port.backlog = self.dispatcher.backlog_of
        self.collector.more.append(lambda: backlog_metrics(self.dispatcher, self.collector.serving()))
        self.async_queue = GroupCommit(self.store, insert_requests)
        # With --credentials, async InputLocations and transform jobs may name paths on this machine only
        # below the local data root (docs/security.md)
        root = settings.local_data_root
        self.local_access = LocalAccess(settings.credentials_file is not None, str(root) if root else None)
        # before any fleet is deployed: the fleets' capture taps write through it
        self.capture = CaptureWriter(CaptureSettings.from_environ(os.environ), logs, self.local_access)
        self.capture.start()
        self.runtime.asynchronous = AsyncRuntimeApi(
            self.table, settings.account_id, self.async_queue, self.dispatcher.accepted, self.local_access
        )
        transform_jobs = TransformJobs(
            self.store, quotas.per_endpoint, self._wake_transforms, self.local_access
        )
        tables = {
            "sagemaker": control.operations(self.store, endpoints, transform_jobs),
            "application-autoscaling": scaling.operations(self.store, port, self.clock, self.scaling),
        }
        self.control = JsonServices(
            [
                JsonService(
                    service,
                    table,
                    settings.account_id,
                    settings.default_region,
                    settings.max_control_body_bytes,
                )
                for service, table in tables.items()
            ]
        )
        alarms = Alarms(self.store, self.clock, min_period=settings.alarm_min_period_seconds)
        metric_api = MetricApi(self.store, self.clock)
        self.cloudwatch = CloudWatchApi(
            cloudwatch_operations(metric_api, alarms), settings.account_id, settings.default_region
        )
        self.leadership = AdvisoryLock(self.store) if self.store.shared else SoleServer()
        if await self.leadership.try_lead():
            await self._lead()
        else:
            log.info("another server reconciles; this one serves the API and follows its routes")
            self._in_background(self._follow_until_leading(), "leadership")
        if self.store.shared and self.stats is not None:
            # every server's invocations count for autoscaling, whichever server runs it
            reporter = TrafficReporter(self.store, self.stats)
            port.traffic = reporter
            self._in_background(reporter.run(), "traffic")
        if self.store.shared:  # serverless cold starts and idleness, whichever server the requests reach
            self._in_background(self.demand.report(), "serverless-demand")
        self._in_background(self.usage.run(), "usage")
        if self.stats is not None:
            self.history = MetricRecorder(
                self.store, self.stats, self.table, self.usage, self.clock, self.history_settings
            )
            self._in_background(self.history.run(), "metric-history")

    async def _lead(self) -> None:
        """Reconcile: rebuild what the rows say should run (warm before this returns), then carry out
        every change the rows ask for; on a shared database, publish the routes for the other servers."""
        assert self.reconciler is not None and self.scaling is not None and self.store is not None
        assert self.provider is not None
        if self.store.shared:  # watched from the start: restoring may take minutes
            self._in_background(self._stop_when_lead_lost(), "lead")
        try:
            await self.provider.adopt()  # instances an earlier server left running
            await self.reconciler.restore()
            await self.provider.release(await self.reconciler.needed_deployments(), ADOPT_GRACE_SECONDS)
            self._in_background(self.reconciler.follow(), "reconciler")
            assert self.dispatcher is not None
            self._in_background(self.dispatcher.run(), "async-inference")
            self.transforms = TransformRunner(
                self.store, self.reconciler.ctx, self.reconciler.poll_seconds, self.local_access
            )
            self._in_background(self.transforms.run(), "transforms")
            await self.scaling.start()
        except Exception:
            if not self.store.shared:
                raise  # start-up fails, with the reason
            # holding the lead while not reconciling would keep every other server from doing it
            log.critical("taking the lead failed", exc_info=True)
            _stop_now("so that another server takes the lead")
        resolution = self.history_settings.resolution_seconds
        evaluator = AlarmEvaluator(self.store, self.clock, resolution, self.alarm_seconds)
        self._in_background(evaluator.run(), "alarms")
        if self.store.shared:
            publisher = RoutePublisher(
                self.store, self.table, self.reconciler.published_states, self.settings.route_sync_seconds
            )
            self._in_background(publisher.run(), "routes")
            assert self.demand is not None
            reconciler = self.reconciler
            follow = self.demand.follow(lambda demand: apply_demand(reconciler.fleets, demand))
            self._in_background(follow, "serverless-follow")
        log.info("reconciling; %d endpoint(s) serving", len(self.reconciler.fleets))

    async def _follow_until_leading(self) -> None:
        assert self.store is not None and self.leadership is not None
        follower = self.follower
        assert follower is not None
        following = asyncio.create_task(follower.run(), name="follow-routes")
        try:
            while not await self.leadership.try_lead():
                await asyncio.sleep(self.settings.leader_retry_seconds)
            log.info("the server that reconciled is gone; this one reconciles now")
            await self._lead()  # followed routes serve until the restored fleets replace them
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            follower.forget()

    async def _stop_when_lead_lost(self) -> None:
        """A server that lost the lead stops at once, so two never reconcile together; its instances
        on a cluster go on serving and the next server to lead adopts them. Run servers under a
        supervisor that restarts them (docs/cluster.md)."""
        assert self.leadership is not None
        await self.leadership.lost()
        _stop_now("it lost the lead (its database connection)")

    def _wake_transforms(self) -> None:
        if self.transforms is not None:  # else the server that leads reads the rows on its next poll
            self.transforms.wake()

    def _variant_states(self, name: str) -> dict[str, VariantState]:
        """What each variant of an endpoint runs now: this server's fleets when it reconciles, else what
        the server that does last published."""
        assert self.reconciler is not None
        if name in self.reconciler.fleets or self.follower is None:
            return self.reconciler.variant_states(name)
        published = self.follower.state(name)
        return {variant: VariantState.from_json(state) for variant, state in published.items()}

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._background.append(asyncio.create_task(work, name=name))

    async def shutdown(self) -> None:
        # first, while the S3 store still serves: a job's run ends here, not on a failing read or write
        if self.transforms is not None:  # its jobs stay InProgress: the next server resumes them
            await self.transforms.shutdown()
        if self.capture is not None:  # what was captured is written while the S3 store still serves
            await self.capture.close()
        await self.s3_service.stop()
        if self.scaling is not None:
            await self.scaling.stop()
        for task in self._background:
            task.cancel()
        if self.history is not None:  # the interval under way, while the store is open
            await self.history.flush()
        if self.dispatcher is not None:  # requests not finished stay queued: the next start runs them
            await self.dispatcher.close()
        await self.notifier.close()
        if self.async_queue is not None:
            await self.async_queue.close()
        if self.reconciler is not None:
            # instances on a cluster outlive a server that shares its database (another adopts them);
            # a server alone stops its own
            handed_over = self.provider is not None and self.provider.outlives_server
            handed_over = handed_over and self.store is not None and self.store.shared
            await self.reconciler.shutdown(stop_instances=not handed_over)
        if self.provider is not None:
            await self.provider.close()
        if self.leadership is not None:
            self.leadership.close()
        if self.store is not None:
            self.store.close()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)


def _stop_now(why: str) -> NoReturn:
    """Exit at once, instances left serving, so that two servers never reconcile together (exit status
    75: a supervisor restarts the server, which then follows the one that leads)."""
    log.critical("stopping now: %s", why)
    logging.shutdown()
    os._exit(75)


def _installation(store: Store) -> str:
    with store.session() as session:
        return str(session.scalars(select(InstallationRow.id)).one())


# X-Amz-Target prefix -> the service its requests are signed for
_TARGET_SERVICES = {
    b"SageMaker": "sagemaker",
    b"AnyScaleFrontendService": "application-autoscaling",
    CLOUDWATCH_TARGET.encode(): CLOUDWATCH_SIGNING_NAME,
}


def _expected_service(family: str, headers: Mapping[bytes, bytes]) -> str | None:
    """The signing name a request of `family` must be scoped to (None: any, the API refuses it)."""
    if family == "runtime":
        return "sagemaker"  # SageMaker Runtime signs as sagemaker
    if family == "cbor":
        return CLOUDWATCH_SIGNING_NAME
    return _TARGET_SERVICES.get(headers.get(b"x-amz-target", b"").partition(b".")[0])


def _check_scope(signed_for: str, expected: str | None) -> None:
    """A signature is good only for the service it names (AWS's rule): one made for S3, whose body
    may be UNSIGNED-PAYLOAD, must not carry a changed body into SageMaker."""
    if expected is not None and signed_for != expected:
        raise AuthFailure("wrong-service", f"Credential should be scoped to correct service: '{expected}'.")


async def serve(settings: Settings, ready: str | None = None) -> None:
    """Run until SIGINT/SIGTERM; `ready` is printed once the port accepts connections."""
    app = MoorageApp(settings)
    try:
        await app.startup()
    except BaseException:
        await app.shutdown()  # whatever did start (the embedded store, a cluster connection) stops
        raise
    loop = asyncio.get_running_loop()
    # InvokeEndpoint bodies may be 6 MiB; control-plane requests are small JSON documents, and a bigger
    # one is refused before it is read (so it cannot tie up the loop that serves invocations)
    verified = app.verifier is not None
    http = HttpServer(
        app.authenticated if verified else app,
        settings.max_control_body_bytes,
        refusal=app.refusal,
        prefix_limit=(RUNTIME_PREFIX, MAX_PAYLOAD_BYTES),
        streams=app.authenticated_streams if verified else app.streams,
    )
    server = await loop.create_server(http, settings.host, settings.port, backlog=1024, reuse_address=True)
    http.enforce_timeouts(settings.idle_timeout_seconds, settings.request_timeout_seconds)
    # what start-up built (modules, boto3's models, the restored fleets) lives as long as the server:
    # kept out of the collector's full passes, which then scan only what came later. Objects that live
    # a little longer than a request (data capture's pending requests, shadow copies) trigger a full
    # pass every second or so at full load, and over everything it took 35-50 ms: a stall of the loop.
    gc.freeze()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        print(ready, flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        server.close()
        await http.drain(timeout=5)
        await app.shutdown()
