"""Application Auto Scaling for SageMaker endpoint variants: scalable targets, target tracking policies,
scaling activities, and the engine that evaluates the policies and changes desired instance counts.

One module per job: resources (ids, ARNs, names), targets, policies, activities, paging, metrics (the
metric maths), tracking (alarms, capacities, cooldowns), sampling (what the engine remembers), engine
(the loop), ports (what the fleet owner implements), settings."""

from moorage.control.scaling.engine import ScalingEngine
from moorage.control.scaling.ports import CapacityChangeRefused, FleetPort, VariantReading
from moorage.control.scaling.settings import ScalingSettings

__all__ = ["CapacityChangeRefused", "FleetPort", "ScalingEngine", "ScalingSettings", "VariantReading"]
