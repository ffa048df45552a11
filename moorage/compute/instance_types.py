"""What an `InstanceType` asks of a cluster: vCPUs, memory and GPUs, as AWS sizes the type.

A provider that places instances on a shared cluster (Ray) reserves these for each instance, so a node
runs only as many instances as it has room for; the local provider ignores them. The table covers the
common hosting types; `MOORAGE_INSTANCE_TYPES` overrides or adds entries (docs/cluster.md)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
_SERVERLESS = re.compile(r"serverless-(\d+)MB")
SERVERLESS_CPUS = 1.0  # what a serverless variant's instance reserves: one vCPU
OVERRIDE_VARIABLE = "MOORAGE_INSTANCE_TYPES"


@dataclass(frozen=True)
class InstanceResources:
    cpus: float
    memory_bytes: int
    gpus: int = 0

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        return f"{self.cpus:g} CPU, {self.memory_bytes / GIB:g} GiB memory{gpus}"


def _type(cpus: float, memory_gib: float, gpus: int = 0) -> InstanceResources:
    return InstanceResources(cpus, int(memory_gib * GIB), gpus)


# vCPUs, memory (GiB) and GPUs of the ml.* hosting types, as AWS lists them
INSTANCE_TYPES: dict[str, InstanceResources] = {
    "ml.t2.medium": _type(2, 4),
    "ml.t2.large": _type(2, 8),
    "ml.t2.xlarge": _type(4, 16),
    "ml.m5.large": _type(2, 8),
    "ml.m5.xlarge": _type(4, 16),
    "ml.m5.2xlarge": _type(8, 32),
    "ml.m5.4xlarge": _type(16, 64),
    "ml.m5.12xlarge": _type(48, 192),
    "ml.m6i.large": _type(2, 8),
    "ml.m6i.xlarge": _type(4, 16),
    "ml.m6i.2xlarge": _type(8, 32),
    "ml.c5.large": _type(2, 4),
    "ml.c5.xlarge": _type(4, 8),
    "ml.c5.2xlarge": _type(8, 16),
    "ml.c5.4xlarge": _type(16, 32),
    "ml.c6i.large": _type(2, 4),
    "ml.c6i.xlarge": _type(4, 8),
    "ml.r5.large": _type(2, 16),
    "ml.r5.xlarge": _type(4, 32),
    "ml.r5.2xlarge": _type(8, 64),
    "ml.g4dn.xlarge": _type(4, 16, 1),
    "ml.g4dn.2xlarge": _type(8, 32, 1),
    "ml.g5.xlarge": _type(4, 16, 1),
    "ml.g5.2xlarge": _type(8, 32, 1),
    "ml.g5.12xlarge": _type(48, 192, 4),
    "ml.p3.2xlarge": _type(8, 61, 1),
}


class UnknownInstanceType(Exception):
    """str() is a FailureReason."""


def load_instance_types(environ: Mapping[str, str] = os.environ) -> dict[str, InstanceResources]:
    """The table, with `MOORAGE_INSTANCE_TYPES` applied: inline JSON or the path of a JSON file, mapping
    a type to ``{"cpus": 2, "memory_gib": 8, "gpus": 0}``."""
    table = dict(INSTANCE_TYPES)
    text = environ.get(OVERRIDE_VARIABLE, "").strip()
    if not text:
        return table
    if not text.startswith("{"):
        text = Path(text).read_text()
    try:
        entries = json.loads(text)
        for name, entry in entries.items():
            table[str(name)] = _type(
                float(entry["cpus"]), float(entry["memory_gib"]), int(entry.get("gpus", 0))
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f'{OVERRIDE_VARIABLE}: expected {{"<type>": {{"cpus": N, "memory_gib": N, "gpus": N}}}}: {exc}'
        ) from None
    return table


def resources_for(instance_type: str, table: Mapping[str, InstanceResources]) -> InstanceResources:
    found = table.get(instance_type)
    if found is None and (size := _SERVERLESS.fullmatch(instance_type)) is not None:
        # a serverless variant's instance (moorage/fleet/serverless.py): one vCPU, its MemorySizeInMB
        return InstanceResources(SERVERLESS_CPUS, int(size.group(1)) * 1024**2)
    if found is None:
        raise UnknownInstanceType(
            f"InstanceType {instance_type} has no known size on this server, so a cluster cannot place it. "
            f"Use one of {', '.join(sorted(table))}, or give its size in {OVERRIDE_VARIABLE}."
        )
    return found
