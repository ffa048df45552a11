"""CPUUtilization and MemoryUtilization of every instance, sampled on a schedule.

CPU is the share of one core over the last interval (100 % = one core busy; an instance using two
cores reads 200 %, as CloudWatch reports it per vCPU); memory is resident memory as a share of this
machine's memory (on one machine every instance shares it, whatever its InstanceType)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from moorage.clock import Clock
from moorage.compute.base import Instance
from moorage.compute.procfs import total_memory_bytes

DEFAULT_INTERVAL_SECONDS = 5.0


@dataclass(frozen=True)
class Utilization:
    cpu_percent: float
    memory_percent: float


class UsageMeter:
    def __init__(self, clock: Clock, instances: Callable[[], Iterable[Instance]]) -> None:
        self.clock = clock
        self.instances = instances
        self.memory_bytes = total_memory_bytes()
        self._last: dict[str, tuple[float, float]] = {}  # instance id -> (cpu seconds, when)
        self._now: dict[str, Utilization] = {}

    def of(self, instance_id: str) -> Utilization | None:
        return self._now.get(instance_id)

    def sample(self) -> None:
        now = self.clock.monotonic()
        last, current = self._last, {}
        readings: dict[str, Utilization] = {}
        for instance in self.instances():
            usage = instance.usage()
            if usage is None:
                continue
            taken = usage.taken_at if usage.taken_at is not None else now
            previous = last.get(instance.instance_id)
            if previous is not None and taken == previous[1] and instance.instance_id in self._now:
                # no newer reading (a remote one still on its way): the last figures stand
                current[instance.instance_id] = previous
                readings[instance.instance_id] = self._now[instance.instance_id]
                continue
            current[instance.instance_id] = (usage.cpu_seconds, taken)
            cpu = 0.0
            if previous is not None and taken > previous[1]:
                cpu = max(0.0, (usage.cpu_seconds - previous[0]) / (taken - previous[1]) * 100)
            total = usage.memory_total or self.memory_bytes
            memory = usage.rss_bytes / total * 100 if total else 0.0
            readings[instance.instance_id] = Utilization(round(cpu, 2), round(memory, 2))
        self._last, self._now = current, readings

    async def run(self, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        while True:
            self.sample()
            await self.clock.sleep(interval)
