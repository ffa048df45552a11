"""Endpoint resources and their status machine.

Creating → InService | Failed; InService → Updating → InService (FailureReason set when an update is
rolled back, through RollingBack when traffic had moved); a rolling update whose rollback failed ends in
UpdateRollbackFailed, which UpdateEndpoint leaves like InService; any → Deleting → gone. The operations
here only validate and record the transition; the reconciler does the work (deployments:
moorage/control/deployment).

Each operation is a coroutine on the event loop: its reads and writes run together on the store's threads
(`Store.run`), and only telling the reconciler, which owns the live fleets, happens on the loop."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moorage.api.errors import ValidationException, already_exists, not_found
from moorage.api.json_protocol import INSTANCES_MEMBER
from moorage.control.context import Caller
from moorage.control.deployment import check_alarms_exist, check_deployment_config, split_live
from moorage.control.endpoint_configs import load_config
from moorage.control.listing import list_page
from moorage.control.models import model_specs
from moorage.control.quotas import InstanceQuotas, instance_demand
from moorage.control.reconciler import Reconciler, VariantState
from moorage.control.serverless import serverless_update
from moorage.control.tags import check_tags
from moorage.fleet.plan import variant_capacity
from moorage.fleet.serverless import serverless_config
from moorage.store import Store, update_endpoint
from moorage.store.tables import EndpointRow

Params = dict[str, Any]

# Deletion rereads an endpoint that another writer changed under it this many times before giving up.
DELETE_ATTEMPTS = 5
# statuses UpdateEndpoint starts from: a rolling update whose rollback failed is updated like InService
_UPDATABLE = ("InService", "UpdateRollbackFailed")
# while these last, DescribeEndpoint shows the deployment (PendingDeploymentSummary)
_DEPLOYING = ("Creating", "Updating", "RollingBack", "UpdateRollbackFailed")


class Endpoints:
    def __init__(
        self,
        store: Store,
        reconciler: Reconciler,
        quotas: InstanceQuotas,
        live: Callable[[str], dict[str, VariantState]] | None = None,
    ) -> None:
        self.store = store
        self.reconciler = reconciler
        self.quotas = quotas
        # what each variant runs now: the reconciler's fleets, or on a server that does not reconcile,
        # what the one that does published (DescribeEndpoint answers the same on every server)
        self.live = live or reconciler.variant_states
        # told the name of every endpoint that DeleteEndpoint accepts (autoscaling drops its targets)
        self.on_delete: list[Callable[[str], Awaitable[object]]] = []

    def _row(self, caller: Caller, name: str) -> EndpointRow:
        with self.store.session() as session:
            return _find(session, caller, name)

    def _snapshot(self, caller: Caller, config_name: str) -> dict[str, Any]:
        """The config and its models as they are now, so later deletes cannot break the endpoint."""
        config = load_config(self.store, caller, config_name)
        spec = {**config.spec, "EndpointConfigArn": config.arn}
        wanted = {
            v["ModelName"] for v in [*spec["ProductionVariants"], *spec.get("ShadowProductionVariants", [])]
        }
        models = model_specs(self.store, wanted)
        missing = sorted(wanted - set(models))
        if missing:
            raise ValidationException(
                f"{not_found('model', caller.arn('model', missing[0]))} It is used by endpoint configuration "
                f"{config_name}; create the model again or use another endpoint configuration."
            )
        # when the images were "resolved" (DeployedImages.ResolutionTime): when this deployment was accepted
        return {"config": spec, "models": models, "accepted_at": time.time()}

    async def create(self, caller: Caller, params: Params) -> Params:
        arn = await self.store.run(self._record_create, caller, params)
        self.reconciler.wake()
        return {"EndpointArn": arn}

    def _record_create(self, caller: Caller, params: Params) -> str:
        name = params["EndpointName"]
        check_tags(params.get("Tags", []))
        arn = caller.arn("endpoint", name)
        snapshot = self._snapshot(caller, params["EndpointConfigName"])
        with self.store.session() as session:
            if (existing := lookup(session, name)) is not None:
                raise ValidationException(already_exists("endpoint", existing.arn))
            # kept for later updates (RetainDeploymentConfig), so checked as SageMaker checks it now
            check_deployment_config(params.get("DeploymentConfig"), snapshot, None)
            check_alarms_exist(session, params.get("DeploymentConfig"))
        self.quotas.check(self.store, name, instance_demand(snapshot))
        now = time.time()
        try:
            with self.store.session() as session:
                session.add(
                    EndpointRow(
                        name=name,
                        name_key=name.lower(),
                        arn=arn,
                        config_name=params["EndpointConfigName"],
                        status="Creating",
                        creation_time=now,
                        last_modified_time=now,
                        pending=snapshot,
                        pending_start_time=now,
                        deployment_config=params.get("DeploymentConfig"),
                        tags=params.get("Tags", []),
                        generation=0,
                        version=1,
                    )
                )
        except IntegrityError:  # another front door created the same name since the check above
            raise ValidationException(already_exists("endpoint", arn)) from None
        return arn

    async def update(self, caller: Caller, params: Params) -> Params:
        arn = await self.store.run(self._record_update, caller, params)
        self.reconciler.wake()
        return {"EndpointArn": arn}

    def _record_update(self, caller: Caller, params: Params) -> str:
        name = params["EndpointName"]
        row = self._row(caller, name)
        if row.status not in _UPDATABLE:
            raise _in_progress(row.arn, row.status)
        snapshot = self._snapshot(caller, params["EndpointConfigName"])
        was_async = "AsyncInferenceConfig" in ((row.deployed or {}).get("config") or {})
        if was_async and "AsyncInferenceConfig" not in snapshot["config"]:  # queued requests: stranded
            raise ValidationException(
                f"Endpoint {name} is asynchronous and endpoint configuration "
                f"{params['EndpointConfigName']} has no AsyncInferenceConfig: an asynchronous endpoint "
                "cannot be updated to a real-time one. Delete the endpoint (after its queued requests "
                "have finished) and create it again with the real-time configuration."
            )
        if params.get("RetainAllVariantProperties") and row.deployed:
            _retain_variant_properties(
                snapshot, row.deployed, params.get("ExcludeRetainedVariantProperties", [])
            )
        deployment_config = _deployment_config(row, params)
        check_deployment_config(deployment_config, snapshot, row.deployed)
        with self.store.session() as session:
            check_alarms_exist(session, deployment_config)
        self.quotas.check(self.store, row.name, instance_demand(snapshot))
        now = time.time()
        self._transition(
            row,
            status="Updating",
            pending=snapshot,
            pending_start_time=now,
            last_modified_time=now,
            failure_reason=None,
            generation=row.generation + 1,
            deployment_config=deployment_config,
        )
        return row.arn

    async def update_weights_and_capacities(self, caller: Caller, params: Params) -> Params:
        """UpdateEndpointWeightsAndCapacities: Updating until every variant has its new instance count;
        new weights take effect once the instances they send traffic to are warm."""
        row = await self.store.run(self._row, caller, params["EndpointName"])
        counts: dict[str, int] = {}
        weights: dict[str, float] = {}
        serverless: dict[str, Params] = {}
        for change in params["DesiredWeightsAndCapacities"]:
            variant = change["VariantName"]
            if variant in counts or variant in weights or variant in serverless:
                raise ValidationException(
                    f"Variant {variant} appears more than once in DesiredWeightsAndCapacities; list each "
                    "variant once."
                )
            if not {"DesiredWeight", "DesiredInstanceCount", "ServerlessUpdateConfig"} & set(change):
                raise ValidationException(
                    f"Variant {variant}: give DesiredWeight, DesiredInstanceCount or both "
                    "(ServerlessUpdateConfig for a serverless variant)."
                )
            if "DesiredInstanceCount" in change:
                counts[variant] = change["DesiredInstanceCount"]
            if "DesiredWeight" in change:
                weights[variant] = change["DesiredWeight"]
            if "ServerlessUpdateConfig" in change:
                serverless[variant] = change["ServerlessUpdateConfig"]
        await self.change_capacity(row.name, counts, weights, serverless)
        return {"EndpointArn": row.arn}

    async def change_capacity(
        self,
        name: str,
        counts: dict[str, int],
        weights: dict[str, float],
        serverless: dict[str, Params] | None = None,
    ) -> None:
        """The one way instance counts and weights change (the API above, and autoscaling): checked,
        recorded as the variants' desired capacity, then carried out by the reconciler. `serverless`:
        ServerlessUpdateConfig by variant."""
        await self.store.run(self._record_capacity, name, counts, weights, serverless or {})
        self.reconciler.wake()

    def _record_capacity(
        self, name: str, counts: dict[str, int], weights: dict[str, float], serverless: dict[str, Params]
    ) -> None:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            if row is None:
                raise ValidationException(f'Could not find endpoint "{name}".')
            arn, status, deployed, version = row.arn, row.status, row.deployed, row.version
        if status != "InService" or not deployed:
            raise _in_progress(arn, status)
        config = deployed["config"]  # shadow variants' counts and weights (their share) change alike
        variants = {
            v["VariantName"]: v
            for v in [*config["ProductionVariants"], *config.get("ShadowProductionVariants", [])]
        }
        unknown = sorted((set(counts) | set(weights) | set(serverless)) - set(variants))
        if unknown:
            raise ValidationException(
                f'The variant(s) "{unknown}" is/are not present in the endpoint configuration of endpoint '
                f"{name}. Its variants are {sorted(variants)}."
            )
        for variant, count in counts.items():
            if "ServerlessConfig" in variants[variant]:
                raise ValidationException(
                    f"Variant {variant} is serverless: it has no instance count to change."
                )
            if count < 1 and "AsyncInferenceConfig" not in deployed["config"]:  # async: down to 0
                raise ValidationException(
                    f"Variant {variant}: DesiredInstanceCount must be at least 1 for a real-time endpoint."
                )
        capacity: dict[str, dict[str, Any]] = {
            variant: dict(zip(("instances", "weight"), variant_capacity(deployed, pv), strict=True))
            for variant, pv in variants.items()
        }
        for variant, pv in variants.items():  # earlier ServerlessUpdateConfigs stay in force
            if (config := serverless_config(deployed, pv)) is not None:
                capacity[variant]["serverless"] = serverless_update(variant, config, serverless.get(variant))
        for variant in serverless.keys() - {v for v, pv in variants.items() if "ServerlessConfig" in pv}:
            raise ValidationException(
                f"Variant {variant} is not serverless: ServerlessUpdateConfig applies only to variants with "
                "a ServerlessConfig. Use DesiredInstanceCount."
            )
        for variant, count in counts.items():
            capacity[variant]["instances"] = count
        for variant, weight in weights.items():
            capacity[variant]["weight"] = weight
        if not math.isfinite(sum(float(c["weight"]) for c in capacity.values())):
            raise ValidationException("The variant weights add up to more than a double can hold.")
        target = {**deployed, "capacity": capacity}
        self.quotas.check(self.store, name, instance_demand(target), replaces=True)
        with self.store.session() as session:
            won = update_endpoint(
                session,
                name,
                version,
                status="Updating",
                deployed=target,
                failure_reason=None,
                last_modified_time=time.time(),
            )
        if not won:
            raise self._lost_race(name, arn)

    async def delete(self, caller: Caller, params: Params) -> Params:
        name = await self.store.run(self._record_delete, caller, params["EndpointName"])
        for listener in self.on_delete:
            await listener(name)
        self.reconciler.wake()
        return {}

    def _record_delete(self, caller: Caller, name: str) -> str:
        """Deletion has no precondition besides existence, so a change that overtook it (an autoscaler's
        new instance count, a status the reconciler wrote) is read again rather than refused."""
        for _ in range(DELETE_ATTEMPTS - 1):
            row = self._row(caller, name)
            with self.store.session() as session:
                if update_endpoint(
                    session, row.name, row.version, status="Deleting", last_modified_time=time.time()
                ):
                    return row.name
        row = self._row(caller, name)
        self._transition(row, status="Deleting", last_modified_time=time.time())
        return row.name

    def _transition(self, row: EndpointRow, **values: Any) -> None:
        """Write a transition decided on `row` as read; refused if another writer changed it since."""
        with self.store.session() as session:
            won = update_endpoint(session, row.name, row.version, **values)
        if not won:
            raise self._lost_race(row.name, row.arn)

    def _lost_race(self, name: str, arn: str) -> ValidationException:
        """The answer to a change that another one overtook: AWS's refusal of an update to an endpoint
        that is changing, or not-found when the other change removed it."""
        with self.store.session() as session:
            current = session.get(EndpointRow, name)
            status = current.status if current is not None else None
        if status is None:
            return ValidationException(not_found("endpoint", arn))
        return ValidationException(
            f'Cannot update in-progress endpoint "{arn}". Another request changed it while this one was '
            f"being applied; its status is now {status}. Describe it and try again."
        )

    async def describe(self, caller: Caller, params: Params) -> Params:
        row = await self.store.run(self._row, caller, params["EndpointName"])
        result: Params = {
            "EndpointName": row.name,
            "EndpointArn": row.arn,
            "EndpointConfigName": row.config_name,
            "EndpointStatus": row.status,
            "FailureReason": row.failure_reason,
            "CreationTime": row.creation_time,
            "LastModifiedTime": row.last_modified_time,
            "LastDeploymentConfig": row.deployment_config,
        }
        live, pending_live = split_live(self.live(row.name))  # what serves; what a deployment brings
        if row.deployed:
            config = row.deployed["config"]
            resolved = row.deployed.get("accepted_at", row.creation_time)
            # a capacity change accepted but not yet taken up by the fleet shows as under way already
            resizing = row.last_modified_time if row.status == "Updating" and not row.pending else None
            result["ProductionVariants"] = [
                _variant_summary(v, row.deployed, live.get(v["VariantName"]), resolved, resizing)
                for v in config["ProductionVariants"]
            ]
            if "ShadowProductionVariants" in config:  # ProductionVariantSummary, as for production ones
                result["ShadowProductionVariants"] = [
                    _variant_summary(v, row.deployed, live.get(v["VariantName"]), resolved)
                    for v in config["ShadowProductionVariants"]
                ]
            for member in (
                "AsyncInferenceConfig",
                "ExplainerConfig",
                "MetricsConfig",
            ):
                if member in config:
                    result[member] = config[member]
            if "DataCaptureConfig" in config:
                result["DataCaptureConfig"] = _capture_summary(config["DataCaptureConfig"])
            placed = [
                {"VariantName": variant, "InstanceId": instance, "Placement": where}
                for variant, state in [*live.items(), *pending_live.items()]
                for instance, where in state.placements
            ]
            if placed:
                result[INSTANCES_MEMBER] = placed
        if row.pending and row.status in _DEPLOYING:
            result["PendingDeploymentSummary"] = _pending_summary(
                row.pending, row.pending_start_time or time.time(), pending_live
            )
        return result

    async def list(self, caller: Caller, params: Params) -> Params:
        rows = await self.store.run(self._all_rows)
        summaries = [
            {
                "EndpointName": r.name,
                "EndpointArn": r.arn,
                "CreationTime": r.creation_time,
                "LastModifiedTime": r.last_modified_time,
                "EndpointStatus": r.status,
            }
            for r in rows
        ]
        page, token = list_page(summaries, params, name_key="EndpointName", status_key="EndpointStatus")
        return {"Endpoints": page, "NextToken": token}

    def _all_rows(self) -> Sequence[EndpointRow]:
        with self.store.session() as session:
            return session.scalars(select(EndpointRow)).all()


def lookup(session: Session, name: str) -> EndpointRow | None:
    """Endpoint names are unique regardless of case, so any spelling finds the endpoint."""
    return session.scalars(select(EndpointRow).where(EndpointRow.name_key == name.lower())).first()


def _in_progress(arn: str, status: str) -> ValidationException:
    """AWS's refusal of an update (of any kind) to an endpoint that is not InService."""
    return ValidationException(
        f'Cannot update in-progress endpoint "{arn}". Its status is {status}; wait until it is InService '
        "(a Failed endpoint can only be deleted)."
    )


def _find(session: Session, caller: Caller, name: str) -> EndpointRow:
    row = lookup(session, name)
    if row is None:
        raise ValidationException(not_found("endpoint", caller.arn("endpoint", name)))
    return row


def _images(model: Params, when: float) -> list[Params]:
    containers = [model["PrimaryContainer"]] if "PrimaryContainer" in model else model.get("Containers", [])
    return [
        {"SpecifiedImage": c["Image"], "ResolvedImage": c["Image"], "ResolutionTime": when}
        for c in containers
        if c.get("Image")
    ]


def _variant_summary(
    variant: Params, deployed: Params, live: VariantState | None, when: float, resizing: float | None = None
) -> Params:
    """Desired values are what the endpoint is moving to; current ones what serves right now.
    `resizing`: when an accepted capacity change was recorded, while the endpoint carries it out."""
    instances, weight = variant_capacity(deployed, variant)
    summary: Params = {
        "VariantName": variant["VariantName"],
        "DeployedImages": _images(deployed["models"].get(variant["ModelName"], {}), when),
        "CurrentWeight": live.weight if live else weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": live.instances if live else 0,
        "DesiredInstanceCount": instances,
    }
    if live and live.status:
        summary["VariantStatus"] = live.status
    elif live and resizing is not None and live.instances != instances:
        # the fleet has not taken the change up yet (it is woken at once): say what it is about to do
        message = f"Changing the instance count from {live.instances} to {instances}."
        summary["VariantStatus"] = [{"Status": "Updating", "StatusMessage": message, "StartTime": resizing}]
    if (serverless := serverless_config(deployed, variant)) is not None:
        # a serverless variant has no instance counts; a ServerlessUpdateConfig applies at once
        del summary["CurrentInstanceCount"], summary["DesiredInstanceCount"]
        summary["CurrentServerlessConfig"] = serverless
        summary["DesiredServerlessConfig"] = serverless
    if "RoutingConfig" in variant:
        summary["RoutingConfig"] = variant["RoutingConfig"]
    return summary


def _pending_summary(snapshot: Params, started: float, live: dict[str, VariantState]) -> Params:
    config = snapshot["config"]
    return {
        "EndpointConfigName": config["EndpointConfigName"],
        "StartTime": started,
        "ProductionVariants": [
            _pending_variant(v, snapshot, started, live.get(v["VariantName"]))
            for v in config["ProductionVariants"]
        ],
        **(
            {
                "ShadowProductionVariants": [
                    _pending_variant(v, snapshot, started, live.get(v["VariantName"])) for v in shadows
                ]
            }
            if (shadows := config.get("ShadowProductionVariants"))
            else {}
        ),
    }


def _pending_variant(v: Params, snapshot: Params, started: float, live: VariantState | None) -> Params:
    """A PendingProductionVariantSummary: what the variant will have once the deployment is done, and
    (`live`, once its instances run) what it has and does now."""
    summary: Params = {
        "VariantName": v["VariantName"],
        "DeployedImages": _images(snapshot["models"].get(v["ModelName"], {}), started),
        "CurrentWeight": live.weight if live else 0.0,
        "DesiredWeight": v.get("InitialVariantWeight", 1.0),
        "CurrentInstanceCount": live.instances if live else 0,
        "DesiredInstanceCount": v.get("InitialInstanceCount", 1),
        "InstanceType": v.get("InstanceType"),
        "VariantStatus": (live.status if live else None) or [{"Status": "Creating", "StartTime": started}],
    }
    if "ServerlessConfig" in v:  # no instance counts; the config it will have
        del summary["CurrentInstanceCount"], summary["DesiredInstanceCount"], summary["InstanceType"]
        summary["DesiredServerlessConfig"] = v["ServerlessConfig"]
    return summary


def _capture_summary(capture: Params) -> Params:
    """The deployed config's DataCaptureConfig: Started while it enables capture (moorage/capture/ writes
    the records), Stopped when EnableCapture is false. UpdateEndpoint with another config changes it."""
    enabled = bool(capture.get("EnableCapture", True))
    return {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": capture.get("InitialSamplingPercentage", 0),
        "DestinationS3Uri": capture.get("DestinationS3Uri", ""),
        "KmsKeyId": capture.get("KmsKeyId", ""),
    }


def _deployment_config(row: EndpointRow, params: Params) -> Params | None:
    """The DeploymentConfig an update runs with: the request's, or (RetainDeploymentConfig) the last one."""
    if not params.get("RetainDeploymentConfig"):
        config: Params | None = params.get("DeploymentConfig")
    elif "DeploymentConfig" in params:
        raise ValidationException(
            "Give either DeploymentConfig or RetainDeploymentConfig=true, not both: RetainDeploymentConfig "
            "reuses the endpoint's last DeploymentConfig."
        )
    else:
        config = row.deployment_config
    if config and config.get("RollingUpdatePolicy") and row.status == "UpdateRollbackFailed":
        raise ValidationException(
            f"Endpoint {row.name} is UpdateRollbackFailed: it serves from the instances of two endpoint "
            "configurations, and a rolling update replaces the instances of one. Update it with a "
            "BlueGreenUpdatePolicy (or no DeploymentConfig), or delete it."
        )
    return config


def _retain_variant_properties(snapshot: Params, deployed: Params, excluded: list[Params]) -> None:
    """RetainAllVariantProperties keeps the desired instance counts and weights of same-named variants
    (as UpdateEndpointWeightsAndCapacities or autoscaling last set them), and the endpoint's
    DataCaptureConfig; each unless ExcludeRetainedVariantProperties names it."""
    skip = {e.get("VariantPropertyType") for e in excluded}
    if "DataCaptureConfig" not in skip:
        config = snapshot["config"]
        config.pop("DataCaptureConfig", None)
        if (capture := deployed["config"].get("DataCaptureConfig")) is not None:
            config["DataCaptureConfig"] = capture
    old = {v["VariantName"]: v for v in deployed["config"]["ProductionVariants"]}
    for variant in snapshot["config"]["ProductionVariants"]:
        previous = old.get(variant["VariantName"])
        if previous is None:
            continue
        instances, weight = variant_capacity(deployed, previous)
        if "DesiredInstanceCount" not in skip and "InitialInstanceCount" in previous:
            variant["InitialInstanceCount"] = instances
        if "DesiredWeight" not in skip:
            variant["InitialVariantWeight"] = weight
