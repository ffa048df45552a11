"""One production variant's instances, kept at their desired number.

A single task per variant (`_keep`) converges the fleet on `desired`: it starts missing instances (each
joins the routing table only once it is warm) and removes extra ones (they leave the routing table at
once, finish their in-flight requests, then get SIGTERM and, after the grace period, SIGKILL). Instances
that exit on their own, or that a health check gives up on, are replaced by the same loop; repeated
failures back off exponentially instead of spinning."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from moorage.clock import sleep_or_wake
from moorage.compute.base import InstanceSpec, InstanceStartError
from moorage.compute.containers import start_instance
from moorage.dataplane.policy import STRATEGIES
from moorage.dataplane.routes import VariantRoute
from moorage.fleet.gates import variant_gate
from moorage.fleet.health import probe
from moorage.fleet.member import Member
from moorage.fleet.pipeline import with_containers
from moorage.fleet.plan import VariantPlan
from moorage.fleet.serverless import ServerlessScaler
from moorage.fleet.settings import FleetContext

log = logging.getLogger("moorage.fleet")

_DRAIN_POLL_SECONDS = 0.05
_HUNG_GRACE_SECONDS = 5.0  # a hung instance will not act on SIGTERM; it is out of the route already


@dataclass(frozen=True)
class VariantActivity:
    """Something the variant is going through, shown as a DescribeEndpoint VariantStatus entry."""

    status: str  # Creating | Updating | Deleting | ActivatingTraffic | Baking
    message: str
    since: float  # epoch seconds

    def entry(self) -> dict[str, Any]:
        return {"Status": self.status, "StatusMessage": self.message, "StartTime": self.since}


class VariantFleet:
    def __init__(self, endpoint: str, plan: VariantPlan, ctx: FleetContext) -> None:
        self.endpoint = endpoint
        self.plan = plan
        self.ctx = ctx
        self.route = VariantRoute(plan.name, plan.weight, plan.timeout, pick=STRATEGIES[plan.routing])
        self.route.stats = ctx.stats.variant(endpoint, plan.name) if ctx.stats is not None else None
        # several models or containers behind the variant: their requests go through a gate
        self.route.gate = variant_gate(plan, self.route.stats)
        self.members: list[Member] = []
        self.desired = plan.instances
        self.closed = False
        self.problem: VariantActivity | None = None  # failures the fleet is recovering from
        self.resizing: VariantActivity | None = None
        self._failures = 0  # instance failures in a row (exits, hangs, failed starts)
        self._retry_at = 0.0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._leaving: set[asyncio.Task[None]] = set()
        self._resize: asyncio.Future[None] | None = None
        # a serverless variant scales itself between zero and one instance (moorage/fleet/serverless.py)
        self.serverless = ServerlessScaler(self, plan.serverless) if plan.serverless is not None else None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def current(self) -> int:
        """Instances taking traffic now (CurrentInstanceCount)."""
        return len(self.members)

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start `desired` instances at once, all or nothing: a new fleet, before it takes traffic.
        Cancelled (a deployment rolled back or the endpoint deleted while it starts), the instances that
        already started stop too: nothing else knows of them yet."""
        try:
            results = await asyncio.gather(
                *(self._start_member() for _ in range(self.desired)), return_exceptions=True
            )
        except asyncio.CancelledError:
            await asyncio.shield(self.close(drain=False, grace=2.0))
            raise
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self.close(drain=False, grace=2.0)
            raise failure

    def activate(self) -> None:
        """From now on, keep the fleet at its desired size and healthy: replace what fails or hangs,
        apply resizes."""
        self._tasks.append(asyncio.create_task(self._keep(), name=f"fleet:{self.endpoint}/{self.name}"))
        self._tasks.append(
            asyncio.create_task(self._check_health(), name=f"health:{self.endpoint}/{self.name}")
        )
        if self.serverless is not None:
            self._tasks.append(
                asyncio.create_task(self.serverless.run(), name=f"serverless:{self.endpoint}/{self.name}")
            )

    def resize(self, count: int) -> asyncio.Future[None]:
        """Grow or shrink to `count` instances, starting now; the future is done once the fleet has that
        many (its VariantStatus says so meanwhile).

        New instances take traffic only once warm; removed ones drain first. If new instances cannot
        start, the fleet keeps what runs, `desired` falls back to it and the future raises
        InstanceStartError saying why."""
        if self._resize is not None and not self._resize.done():
            self._resize.cancel()
        message = f"Changing the instance count from {self.current} to {count}."
        self.resizing = activity = VariantActivity("Updating", message, self.ctx.clock.time())
        self.desired = count
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._resize = done
        self._wake.set()

        def finished(_: asyncio.Future[None]) -> None:
            if self.resizing is activity:
                self.resizing = None

        done.add_done_callback(finished)
        return done

    def want(self, count: int) -> None:
        """Converge on `count` instances without a VariantStatus entry: a serverless variant's own
        scaling, which DescribeEndpoint does not show as an update."""
        self.desired = count
        self._wake.set()

    def activities(self) -> list[VariantActivity]:
        return [a for a in (self.resizing, self.problem) if a is not None]

    async def close(self, drain: bool, grace: float | None = None) -> None:
        """Stop every instance (after their in-flight requests if `drain`). Cancelling this cuts the
        drain short but never the stop: nobody else would stop them."""
        self.closed = True
        if self.serverless is not None:  # requests held for a cold start move on or fail now
            self.serverless.close()
        for task in self._tasks:
            task.cancel()
        if self._resize is not None and not self._resize.done():
            self._resize.cancel()
        leaving = list(self.members)
        self.members = []
        for member in leaving:
            member.stopping = True
        grace = self.ctx.settings.stop_grace_seconds if grace is None else grace
        stops = [self._retire(member, drain, grace) for member in leaving]
        try:
            await asyncio.shield(asyncio.gather(*stops, *self._leaving, return_exceptions=True))
        finally:
            # only now: a request still draining on one of these may retry on another of them
            self.route.workers = []

    def abandon(self) -> None:
        """Let go of the instances without stopping them (they outlive this server, and the next server
        to reconcile adopts them): no more replacing, health checks or connections from here."""
        self.closed = True
        if self.serverless is not None:
            self.serverless.close()
        for task in self._tasks:
            task.cancel()
        for member in self.members:
            member.stopping = True
            member.close_connections()
            if member.monitor is not None:
                member.monitor.cancel()
        self.members = []
        self.route.workers = []

    # ---- converging on `desired` ---------------------------------------------------------------

    async def _keep(self) -> None:
        while not self.closed:
            await self._converge()
            if self._resize is not None and not self._resize.done() and self.current == self.desired:
                self._resize.set_result(None)
            await self._wake.wait()
            self._wake.clear()

    async def _converge(self) -> None:
        while not self.closed:
            missing = self.desired - self.current
            if missing < 0:
                self._shrink(-missing)
                continue
            if missing == 0:
                return
            wait = self._retry_at - self.ctx.clock.monotonic()
            if wait > 0 and await sleep_or_wake(self.ctx.clock, wait, self._wake):
                continue  # woken: the desired size may have changed
            results = await asyncio.gather(
                *(self._start_member() for _ in range(missing)), return_exceptions=True
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            for failure in failures:
                if isinstance(failure, asyncio.CancelledError):
                    raise failure
                if not isinstance(failure, InstanceStartError):  # a provider bug must not end `_keep`
                    log.error("variant %s: starting an instance failed", self.name, exc_info=failure)
                self._failed(f"a new instance did not start: {failure}", lived=0.0)
            if failures and self._resize is not None and not self._resize.done():
                self.desired = self.current
                self._resize.set_exception(InstanceStartError(str(failures[0])))

    def _shrink(self, count: int) -> None:
        """Take `count` instances out of the routing table now; they drain and stop in the background."""
        victims = sorted(self.members, key=lambda m: (m.outstanding, -m.started))[:count]
        for member in victims:
            self._detach(member)
            self.ctx.logs.write(
                self.endpoint, f"Variant {self.name}: removing instance {member.instance_id} (scale-in)"
            )
            self._in_background(self._retire(member, drain=True, grace=self.ctx.settings.stop_grace_seconds))

    # ---- health -------------------------------------------------------------------------------

    async def _check_health(self) -> None:
        settings = self.ctx.settings
        while not self.closed:
            await self.ctx.clock.sleep(settings.health_interval_seconds)
            members = [m for m in self.members if not m.stopping]
            verdicts = await asyncio.gather(*(probe(m, settings.health_timeout_seconds) for m in members))
            for member, healthy in zip(members, verdicts, strict=True):
                if healthy is None or member.stopping:
                    continue
                member.failed_pings = 0 if healthy else member.failed_pings + 1
                if member.failed_pings >= settings.health_failures:
                    reason = (
                        f"instance {member.instance_id} did not answer GET /ping within "
                        f"{settings.health_timeout_seconds:g} s {member.failed_pings} times in a row (hung?)"
                    )
                    self.lose(member, reason, grace=min(settings.stop_grace_seconds, _HUNG_GRACE_SECONDS))
            if self.problem is not None and self._steady():
                self.problem = None

    def _steady(self) -> bool:
        """Whole again, and every instance has stayed up long enough to call the failures over."""
        now = self.ctx.clock.monotonic()
        steady = self.ctx.settings.steady_seconds
        return self.current >= self.desired and all(now - m.started >= steady for m in self.members)

    # ---- instances -----------------------------------------------------------------------------

    async def _start_member(self) -> Member:
        plan = self.plan
        spec = InstanceSpec(
            instance_id=f"i-{secrets.token_hex(4)}",
            endpoint_name=self.endpoint,
            variant_name=plan.name,
            model_dir=plan.prepared.model_dir,
            python=plan.prepared.python,
            environment=plan.environment,
            log_path=self.ctx.logs.path(self.endpoint),
            startup_timeout=plan.startup_timeout,
            command=plan.prepared.command,
            recipe=plan.recipe,
            instance_type=plan.instance_type,
            download_timeout=plan.download_timeout,
            deployment=plan.deployment,
            fork_from_zygote=plan.serverless is not None,
        )
        if plan.containers:  # each container its own process group (moorage/compute/containers.py)
            spec = with_containers(spec, plan)
        self.ctx.logs.write(self.endpoint, f"Variant {plan.name}: starting instance {spec.instance_id}")
        self.route.starting += 1
        begun = self.ctx.clock.monotonic()
        try:
            instance = await start_instance(self.ctx.provider, spec)
        finally:
            self.route.starting -= 1
        member = Member.of(instance, self.ctx.clock.monotonic())
        if self.route.stats is not None:
            self.route.stats.setup_time.observe((member.started - begun) * 1e6)
        if self.closed:  # the fleet was closed while this one was starting
            await instance.stop(grace=2.0)
            raise InstanceStartError("the fleet was closed while the instance started")
        self.members.append(member)
        self.route.add_workers(member.workers)
        if self.serverless is not None:
            self.serverless.joined()
        member.monitor = asyncio.create_task(self._watch(member))
        self.ctx.logs.write(
            self.endpoint,
            f"Variant {plan.name}: instance {instance.instance_id} is healthy on {instance.placement} "
            f"({len(member.workers)} workers)",
        )
        return member

    async def _watch(self, member: Member) -> None:
        """An instance that exits on its own is replaced; the endpoint stays InService meanwhile."""
        status = await member.instance.wait()
        if member.stopping or self.closed:
            return
        self.lose(member, f"instance {member.instance_id} exited (status {status})", grace=0.0)

    def lose(self, member: Member, reason: str, grace: float) -> None:
        """Give up on a member that failed: out of the routing table now, stopped in the background,
        replaced by `_keep` (after a back-off if failures repeat)."""
        if member.stopping:
            return
        self._detach(member)
        self._in_background(self._retire(member, drain=False, grace=grace))
        self._failed(reason, lived=self.ctx.clock.monotonic() - member.started)
        self._wake.set()

    def _detach(self, member: Member) -> None:
        member.stopping = True
        self.route.remove_instance(member.instance_id)
        if member in self.members:
            self.members.remove(member)

    async def _retire(self, member: Member, drain: bool, grace: float) -> None:
        clock = self.ctx.clock
        if drain:
            if self.ctx.settings.handover_seconds:  # other servers may still route to it for a moment
                await clock.sleep(self.ctx.settings.handover_seconds)
            deadline = clock.monotonic() + self.ctx.settings.drain_seconds
            while member.outstanding and clock.monotonic() < deadline:
                await clock.sleep(_DRAIN_POLL_SECONDS)
        try:
            await asyncio.shield(member.instance.stop(grace))
        finally:
            member.close_connections()
            if member.monitor is not None and member.monitor is not asyncio.current_task():
                member.monitor.cancel()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    # ---- failures and back-off ----------------------------------------------------------------

    def _failed(self, reason: str, lived: float) -> None:
        settings = self.ctx.settings
        if lived >= settings.steady_seconds:
            self._failures = 0
        self._failures += 1
        delay = 0.0
        if self._failures > 1:
            delay = min(
                settings.backoff_initial_seconds * 2 ** (self._failures - 2), settings.backoff_max_seconds
            )
        self._retry_at = self.ctx.clock.monotonic() + delay
        then = "replacing it now" if delay == 0 else f"next attempt in {delay:g} s"
        count = f" ({self._failures} failures in a row)" if self._failures > 1 else ""
        message = f"{reason[:400]}; {then}{count}."
        since = self.problem.since if self.problem else self.ctx.clock.time()
        self.problem = VariantActivity("Updating", message, since)
        if self.serverless is not None:
            self.serverless.failed(reason)
        self.ctx.logs.write(self.endpoint, f"Variant {self.name}: {message}")
