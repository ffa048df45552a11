"""Which gate a variant's route gets (moorage/dataplane/gates.py): none for one model in one container."""

from __future__ import annotations

from moorage.dataplane.containers import DirectGate, SerialGate
from moorage.dataplane.gates import Gate
from moorage.dataplane.multimodel import MultiModelGate
from moorage.dataplane.stats import VariantStats
from moorage.fleet.plan import VariantPlan


def variant_gate(plan: VariantPlan, stats: VariantStats | None) -> Gate | None:
    """A multi-model variant's placement gate, or a multi-container variant's hops; None otherwise (a
    serverless variant's gate is its scaler's)."""
    if plan.multi_model is not None:
        return MultiModelGate(spill_at=plan.multi_model.spill_at)
    if plan.containers:
        hostnames = [c.hostname for c in plan.containers]
        return DirectGate(hostnames, stats) if plan.invocation == "Direct" else SerialGate(hostnames)
    return None
