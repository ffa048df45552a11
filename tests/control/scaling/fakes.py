"""A fleet port whose variants are plain objects: traffic is a rate on the clock, changes apply at once
(or after `start_seconds`), and refusals are set by the test."""

from __future__ import annotations

from dataclasses import dataclass, field

from moorage.control.scaling.ports import CapacityChangeRefused, VariantInfo, VariantReading
from tests.support.clock import FakeClock


@dataclass
class FakeVariant:
    instances: int
    desired: int
    rate_per_minute: float = 0.0  # invocations per minute over the whole variant
    error_4xx_share: float = 0.0
    latency_us: float = 1000.0  # every invocation's ModelLatency
    concurrent: int = 0
    cpu_percent: float = 0.0
    memory_percent: float = 0.0
    serving: bool = True
    # counters, as floats so that fractional traffic accumulates between reads
    invocations: float = 0.0
    errors_4xx: float = 0.0
    since: float = 0.0


@dataclass
class FakeFleetPort:
    clock: FakeClock
    variants: dict[tuple[str, str], FakeVariant] = field(default_factory=dict)
    async_endpoints: set[str] = field(default_factory=set)
    refusal: str | None = None  # every change is refused with this reason while set
    fulfil: bool = True  # instances follow the desired count at once
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def add(
        self, endpoint: str = "ep", variant: str = "v", *, instances: int = 1, asynchronous: bool = False
    ) -> FakeVariant:
        fake = FakeVariant(instances=instances, desired=instances, since=self.clock.monotonic())
        self.variants[(endpoint, variant)] = fake
        if asynchronous:
            self.async_endpoints.add(endpoint)
        return fake

    def variant(self, endpoint: str = "ep", variant: str = "v") -> FakeVariant:
        return self.variants[(endpoint, variant)]

    async def read(self, endpoint: str, variant: str) -> VariantReading | None:
        fake = self.variants.get((endpoint, variant))
        if fake is None or not fake.serving:
            return None
        self._accumulate(fake)
        calls = int(fake.invocations)
        return VariantReading(
            instances=fake.instances,
            desired=fake.desired,
            invocations=calls,
            invocation_4xx=int(fake.errors_4xx),
            invocation_5xx=0,
            model_errors=0,
            model_latency_us_sum=calls * fake.latency_us,
            overhead_latency_us_sum=calls * 100.0,
            latency_count=calls,
            concurrent=fake.concurrent,
            cpu_percent=fake.cpu_percent,
            memory_percent=fake.memory_percent,
        )

    async def exists(self, endpoint: str, variant: str) -> bool:
        return (endpoint, variant) in self.variants

    async def variant_info(self, endpoint: str, variant: str) -> VariantInfo | None:
        if (endpoint, variant) not in self.variants:
            return None
        return VariantInfo(serverless=False, asynchronous=endpoint in self.async_endpoints)

    async def set_desired_instances(self, endpoint: str, variant: str, count: int) -> None:
        self.calls.append((endpoint, variant, count))
        if self.refusal is not None:
            raise CapacityChangeRefused(self.refusal)
        fake = self.variants.get((endpoint, variant))
        if fake is None:
            raise CapacityChangeRefused(f"Could not find endpoint {endpoint}.")
        self._accumulate(fake)
        fake.desired = count
        if self.fulfil:
            fake.instances = count

    def _accumulate(self, fake: FakeVariant) -> None:
        now = self.clock.monotonic()
        calls = fake.rate_per_minute * (now - fake.since) / 60.0
        fake.invocations += calls
        fake.errors_4xx += calls * fake.error_4xx_share
        fake.since = now
