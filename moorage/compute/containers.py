"""Multi-container instances: every container of an instance started as an instance of its own, on any
provider, and presented to the fleet as one instance whose workers say which container they serve."""

from __future__ import annotations

from moorage.compute.base import Instance, InstanceProvider, InstanceSpec


async def start_instance(provider: InstanceProvider, spec: InstanceSpec) -> Instance:
    """`provider.start(spec)`, or for a multi-container spec each container's start, as one instance."""
    if not spec.containers:
        return await provider.start(spec)
    raise NotImplementedError("multi-container instances: under construction")
