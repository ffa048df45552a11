"""Which scalable target a request names, and the identifiers AWS mints around it (ARNs, alarm names).

A scalable target is (ServiceNamespace, ResourceId, ScalableDimension). The dimension fixes both the
namespace and the shape of the ResourceId; AWS answers one message for any mismatch between the three."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, select

from moorage.api.errors import ObjectNotFoundException, ValidationException
from moorage.control.context import Caller
from moorage.store.tables import ScalingActivityRow, ScalingPolicyRow

SAGEMAKER = "sagemaker"
VARIANT_INSTANCES = "sagemaker:variant:DesiredInstanceCount"
UNSUPPORTED = "Unsupported service namespace, resource type or scalable dimension"
SERVED = (
    "This server scales SageMaker endpoint variants: ServiceNamespace sagemaker, ResourceId "
    "endpoint/<EndpointName>/variant/<VariantName>, ScalableDimension sagemaker:variant:DesiredInstanceCount."
)
_VARIANT_RESOURCE = re.compile(r"endpoint/([^/]+)/variant/([^/]+)")
# The ResourceId shape of each SageMaker dimension (other namespaces are never registered here).
_SAGEMAKER_RESOURCES = {
    VARIANT_INSTANCES: _VARIANT_RESOURCE,
    "sagemaker:variant:DesiredProvisionedConcurrency": _VARIANT_RESOURCE,
    "sagemaker:inference-component:DesiredCopyCount": re.compile(r"inference-component/[^/]+"),
}
_SERVICE_LINKED_ROLE = (
    "arn:aws:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
)


@dataclass(frozen=True)
class TargetKey:
    namespace: str
    resource_id: str
    dimension: str

    @classmethod
    def of(cls, params: dict[str, Any]) -> TargetKey:
        key = cls(params["ServiceNamespace"], params["ResourceId"], params["ScalableDimension"])
        check_combination(key.namespace, key.dimension, [key.resource_id])
        return key

    def described(self) -> str:
        return (
            f"service namespace: {self.namespace}, resource ID: {self.resource_id}, "
            f"scalable dimension: {self.dimension}"
        )


@dataclass(frozen=True)
class VariantRef:
    endpoint: str
    variant: str


def check_combination(namespace: str, dimension: str | None, resource_ids: list[str]) -> None:
    """Refuse a dimension of another namespace, or a SageMaker ResourceId of the wrong resource type."""
    if dimension is None:
        if namespace == SAGEMAKER and resource_ids and not all(_sagemaker_shaped(r) for r in resource_ids):
            raise ValidationException(UNSUPPORTED)
        return
    if dimension.partition(":")[0] != namespace:
        raise ValidationException(UNSUPPORTED)
    pattern = _SAGEMAKER_RESOURCES.get(dimension)
    if namespace == SAGEMAKER and (pattern is None or not all(pattern.fullmatch(r) for r in resource_ids)):
        raise ValidationException(UNSUPPORTED)


def _sagemaker_shaped(resource_id: str) -> bool:
    return any(pattern.fullmatch(resource_id) for pattern in _SAGEMAKER_RESOURCES.values())


def scalable_variant(key: TargetKey) -> VariantRef:
    """The endpoint variant a target scales; anything this server cannot scale is refused with the reason."""
    if key.namespace != SAGEMAKER:
        raise ValidationException(f"{UNSUPPORTED}. {SERVED}")
    if key.dimension != VARIANT_INSTANCES:
        raise ValidationException(
            f"Scalable dimension {key.dimension} is not supported by this server (it has no serverless "
            f"provisioned concurrency or inference components). {SERVED}"
        )
    match = _VARIANT_RESOURCE.fullmatch(key.resource_id)
    if match is None:  # check_combination has already refused this; kept for a direct caller
        raise ValidationException(f"{UNSUPPORTED}. {SERVED}")
    return VariantRef(endpoint=match.group(1), variant=match.group(2))


def target_not_registered(key: TargetKey) -> ObjectNotFoundException:
    """PutScalingPolicy's wording."""
    return ObjectNotFoundException(f"No scalable target registered for {key.described()}")


def target_not_found(key: TargetKey) -> ObjectNotFoundException:
    """DeregisterScalableTarget's wording."""
    return ObjectNotFoundException(f"No scalable target found for {key.described()}")


def policy_not_found(key: TargetKey, policy_name: str) -> ObjectNotFoundException:
    return ObjectNotFoundException(
        f"No scaling policy found for {key.described()}, policy name: {policy_name}"
    )


def target_arn(caller: Caller) -> str:
    """AWS's form for a SageMaker variant target: a `056m` prefix and 32 hex digits."""
    return (
        f"arn:aws:application-autoscaling:{caller.region}:{caller.account}:scalable-target/056m"
        f"{uuid.uuid4().hex}"
    )


def policy_arn(caller: Caller, key: TargetKey, policy_name: str) -> str:
    return (
        f"arn:aws:autoscaling:{caller.region}:{caller.account}:scalingPolicy:{uuid.uuid4()}:"
        f"resource/{key.namespace}/{key.resource_id}:policyName/{policy_name}"
    )


def tracking_alarms(caller: Caller, key: TargetKey) -> list[dict[str, str]]:
    """The high and low alarms a target tracking policy owns, named as AWS names them."""
    alarms = []
    for which in ("AlarmHigh", "AlarmLow"):
        name = f"TargetTracking-{key.resource_id}-{which}-{uuid.uuid4()}"
        alarms.append(
            {
                "AlarmName": name,
                "AlarmARN": f"arn:aws:cloudwatch:{caller.region}:{caller.account}:alarm:{name}",
            }
        )
    return alarms


def service_linked_role(account: str) -> str:
    """SageMaker targets always use this role on AWS, whatever RoleARN the request gave."""
    return _SERVICE_LINKED_ROLE.format(account=account)


TargetRows = TypeVar("TargetRows", ScalingPolicyRow, ScalingActivityRow)


def described_rows(table: type[TargetRows], params: dict[str, Any]) -> Select[TargetRows]:
    """The rows a DescribeScalingPolicies / DescribeScalingActivities request asks about: one namespace,
    optionally one ResourceId, and one dimension only together with a ResourceId (as AWS insists)."""
    namespace = params["ServiceNamespace"]
    resource_id = params.get("ResourceId")
    dimension = params.get("ScalableDimension")
    if dimension is not None and resource_id is None:
        raise ValidationException("ResourceId must be specified when ScalableDimension is specified")
    check_combination(namespace, dimension, [resource_id] if resource_id else [])
    query = select(table).where(table.service_namespace == namespace)
    if resource_id is not None:
        query = query.where(table.resource_id == resource_id)
    if dimension is not None:
        query = query.where(table.scalable_dimension == dimension)
    return query
