"""Endpoint config resources: Create / Describe / List / Delete EndpointConfig."""

from __future__ import annotations

import math
import time
from typing import Any

from sqlalchemy import select

from moorage.api.errors import ValidationException, already_exists, not_found
from moorage.capture.config import check_capture_config
from moorage.control.context import Caller
from moorage.control.listing import list_page
from moorage.control.models import model_specs
from moorage.control.serverless import INSTANCE_MEMBERS, check_provisioned, check_serverless_config
from moorage.control.shadows import check_shadow_config
from moorage.control.tags import check_tags
from moorage.jobs.asynchronous.config import check_async_config
from moorage.store import Store
from moorage.store.tables import EndpointConfigRow

Params = dict[str, Any]


def load_config(store: Store, caller: Caller, name: str) -> EndpointConfigRow:
    with store.session() as session:
        row = session.get(EndpointConfigRow, name)
    if row is None:
        raise ValidationException(not_found("endpoint configuration", caller.arn("endpoint-config", name)))
    return row


def _check_variants(store: Store, caller: Caller, variants: list[Params]) -> None:
    names = [v["VariantName"] for v in variants]
    if len(set(names)) != len(names):
        raise ValidationException("ProductionVariants must have unique VariantName values.")
    if not math.isfinite(sum(v.get("InitialVariantWeight", 1.0) for v in variants)):
        raise ValidationException(
            "The InitialVariantWeight values add up to more than a double can hold; weights are relative, "
            "so use values such as 1 and 3."
        )
    for variant in variants:
        if "ServerlessConfig" in variant:
            _check_serverless(variant)
            continue
        if "InstanceType" not in variant or "InitialInstanceCount" not in variant:
            raise ValidationException(
                f"Variant {variant['VariantName']!r} needs InstanceType and InitialInstanceCount "
                "(or a ServerlessConfig)."
            )
    wanted = {v["ModelName"] for v in variants if "ModelName" in v}
    missing = sorted(wanted - set(model_specs(store, wanted)))
    if missing:
        raise ValidationException(not_found("model", caller.arn("model", missing[0])))
    for variant in variants:
        if "ModelName" not in variant:
            raise ValidationException(f"Variant {variant['VariantName']!r} needs a ModelName.")


def _check_serverless(variant: Params) -> None:
    """What SageMaker documents for ServerlessConfig beyond the shape's min/max."""
    name = variant["VariantName"]
    config = variant["ServerlessConfig"]
    instance_members = [m for m in INSTANCE_MEMBERS if m in variant]
    if instance_members:
        raise ValidationException(
            f"Variant {name!r} sets ServerlessConfig and {' and '.join(instance_members)}; a serverless "
            "variant has no instances. Remove one or the other."
        )
    memory = config["MemorySizeInMB"]
    if memory % 1024:
        raise ValidationException(
            f"Variant {name!r}: ServerlessConfig.MemorySizeInMB is {memory}; use 1024, 2048, 3072, 4096, "
            "5120 or 6144."
        )
    check_provisioned(f"Variant {name!r}: ServerlessConfig.", config)


def create_endpoint_config(store: Store, caller: Caller, params: Params) -> Params:
    name = params["EndpointConfigName"]
    check_tags(params.get("Tags", []))
    arn = caller.arn("endpoint-config", name)
    _check_variants(store, caller, params["ProductionVariants"])
    check_serverless_config(params, lambda names: model_specs(store, names))
    check_async_config(params)
    check_capture_config(params)
    check_shadow_config(params, lambda names: model_specs(store, names), lambda m: caller.arn("model", m))
    spec = {k: v for k, v in params.items() if k != "Tags"}
    for variant in [*spec["ProductionVariants"], *spec.get("ShadowProductionVariants", [])]:
        variant.setdefault("InitialVariantWeight", 1.0)
    if "DataCaptureConfig" in spec:
        spec["DataCaptureConfig"].setdefault("EnableCapture", True)
    with store.session() as session:
        if (existing := session.get(EndpointConfigRow, name)) is not None:
            raise ValidationException(already_exists("endpoint configuration", existing.arn))
        session.add(
            EndpointConfigRow(
                name=name, arn=arn, creation_time=time.time(), spec=spec, tags=params.get("Tags", [])
            )
        )
    return {"EndpointConfigArn": arn}


def describe_endpoint_config(store: Store, caller: Caller, params: Params) -> Params:
    row = load_config(store, caller, params["EndpointConfigName"])
    return {**row.spec, "EndpointConfigArn": row.arn, "CreationTime": row.creation_time}


def delete_endpoint_config(store: Store, caller: Caller, params: Params) -> Params:
    """Deleting a config does not touch endpoints using it: they keep a snapshot of what they run."""
    name = params["EndpointConfigName"]
    with store.session() as session:
        row = session.get(EndpointConfigRow, name)
        if row is None:
            raise ValidationException(
                not_found("endpoint configuration", caller.arn("endpoint-config", name))
            )
        session.delete(row)
    return {}


def list_endpoint_configs(store: Store, caller: Caller, params: Params) -> Params:
    with store.session() as session:
        rows = session.scalars(select(EndpointConfigRow)).all()
    summaries = [
        {"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.creation_time}
        for r in rows
    ]
    page, token = list_page(
        summaries,
        params,
        name_key="EndpointConfigName",
    )
    return {"EndpointConfigs": page, "NextToken": token}
