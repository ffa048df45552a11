"""Which gate a variant's route gets (moorage/dataplane/gates.py): none for one model in one container."""

from __future__ import annotations

from moorage.dataplane.containers import DirectGate, SerialGate
from moorage.dataplane.gates import Gate
from moorage.dataplane.multimodel import MultiModelGate
from moorage.dataplane.stats import VariantStats
from moorage.fleet.pipeline import container_timeouts
from moorage.fleet.plan import VariantPlan


def variant_gate(plan: VariantPlan, stats: VariantStats | None) -> Gate | None:
    """A multi-model variant's placement gate, or a multi-container variant's hops; None otherwise (a
    serverless variant's gate is its scaler's)."""
    if plan.multi_model is not None:
        mm = plan.multi_model
        return MultiModelGate(spill_at=mm.spill_at, ready_wait=mm.ready_wait_seconds)
    if plan.containers:
        hostnames, timeouts = [c.hostname for c in plan.containers], container_timeouts(plan)
        gate = DirectGate if plan.invocation == "Direct" else SerialGate
        return gate(hostnames, stats, timeouts)
    return None
