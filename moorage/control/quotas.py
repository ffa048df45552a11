"""Service quotas on instances, the way AWS keeps them per account: instances per endpoint, per instance
type, and in total. Each instance here is a real process group on this machine, so a request that would
start more than the machine was set up for is refused with ``ResourceLimitExceeded`` before anything
starts, not discovered by the kernel halfway through.

Defaults (``Settings``): at most 16 instances in total, or 4 per CPU core where that is more; half of
that per endpoint; per instance type no limit beyond the total unless configured."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from moorage.api.errors import ResourceLimitExceeded
from moorage.config import Settings
from moorage.fleet.plan import variant_capacity
from moorage.store import Store
from moorage.store.tables import EndpointRow

SERVERLESS = "serverless"  # serverless variants run one instance here; counted under this name
# statuses whose instances are running or about to run (a Deleting endpoint's are on their way out);
# a rolling update whose rollback failed serves from instances of both its configs
_HOLDING = frozenset(
    {"Creating", "InService", "Updating", "SystemUpdating", "RollingBack", "UpdateRollbackFailed"}
)


def instance_demand(snapshot: Mapping[str, Any]) -> Counter[str]:
    """Instances an endpoint snapshot asks for (its variants' current desired counts), by instance type."""
    demand: Counter[str] = Counter()
    config = snapshot["config"]  # shadow variants run instances of their own
    for variant in [*config.get("ProductionVariants", []), *config.get("ShadowProductionVariants", [])]:
        if "ServerlessConfig" in variant:
            demand[SERVERLESS] += 1
        else:
            demand[str(variant.get("InstanceType", ""))] += variant_capacity(snapshot, variant)[0]
    return demand


@dataclass(frozen=True)
class InstanceQuotas:
    total: int
    per_endpoint: int
    per_type: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> InstanceQuotas:
        total = settings.max_instances
        per_endpoint = settings.max_instances_per_endpoint or max(1, total // 2)
        return cls(total, per_endpoint, parse_per_type(settings.max_instances_per_type))

    def check(self, store: Store, endpoint: str, demand: Counter[str], *, replaces: bool = False) -> None:
        """Refuse `demand` for `endpoint` if it would break a quota.

        What the other endpoints run counts in full. With `replaces`, the endpoint's own running fleet
        is let go of (a scaling change); without, it keeps running beside the new one (a blue/green
        update starts the new fleet before the old one stops)."""
        in_use = self._in_use(store, exclude=endpoint if replaces else None)
        own = sum(demand.values())
        if own > self.per_endpoint:
            raise ResourceLimitExceeded(
                _message("Maximum number of instances per endpoint", self.per_endpoint, 0, own)
                + " Lower the variants' instance counts, or raise MOORAGE_MAX_INSTANCES_PER_ENDPOINT."
            )
        used = sum(in_use.values())
        if used + own > self.total:
            raise ResourceLimitExceeded(
                _message("Total number of instances across endpoints", self.total, used, own)
                + " Delete or shrink other endpoints, or raise MOORAGE_MAX_INSTANCES."
            )
        for instance_type, count in sorted(demand.items()):
            limit = self.per_type.get(instance_type)
            if limit is not None and in_use[instance_type] + count > limit:
                raise ResourceLimitExceeded(
                    _message(f"{instance_type} for endpoint usage", limit, in_use[instance_type], count)
                    + f" Raise it with MOORAGE_MAX_INSTANCES_PER_TYPE (e.g. {instance_type}={limit * 2})."
                )

    @staticmethod
    def _in_use(store: Store, exclude: str | None) -> Counter[str]:
        with store.session() as session:
            rows = session.scalars(select(EndpointRow).where(EndpointRow.status.in_(_HOLDING))).all()
            snapshots = [(row.name, row.deployed, row.pending) for row in rows]
        return _total(
            instance_demand(snapshot)
            for name, deployed, pending in snapshots
            if name != exclude
            for snapshot in (deployed, pending)
            if snapshot
        )


def _total(demands: Iterable[Counter[str]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for demand in demands:
        total.update(demand)
    return total


def _message(quota: str, limit: int, used: int, delta: int) -> str:
    """AWS's wording for a quota refusal."""
    return (
        f"The account-level service limit '{quota}' is {limit} Instances, with current utilization of "
        f"{used} Instances and a request delta of {delta} Instances."
    )


def parse_per_type(text: str) -> dict[str, int]:
    """``"ml.g5.xlarge=1,ml.m5.large=8"`` -> ``{"ml.g5.xlarge": 1, "ml.m5.large": 8}``."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"MOORAGE_MAX_INSTANCES_PER_TYPE: expected TYPE=COUNT, got {item!r}")
        limits[name.strip()] = int(value)
    return limits
