"""What a serverless endpoint config may not combine with ServerlessConfig (SageMaker's list of features
serverless inference excludes), refused at CreateEndpointConfig so nothing fails later at deployment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from moorage.api.errors import ValidationException

Params = dict[str, Any]

# endpoint-config members serverless endpoints do not support, and what they are
_CONFIG_MEMBERS = {
    "DataCaptureConfig": "data capture",
    "AsyncInferenceConfig": "asynchronous inference",
    "ShadowProductionVariants": "shadow variants",
}
# variant members that size or manage instances, which a serverless variant does not have
INSTANCE_MEMBERS = (
    "InstanceType",
    "InitialInstanceCount",
    "AcceleratorType",
    "VolumeSizeInGB",
    "ManagedInstanceScaling",
)
# model members serverless endpoints do not support
_MODEL_MEMBERS = {"VpcConfig": "a VPC", "EnableNetworkIsolation": "network isolation"}


def check_serverless_config(
    params: Mapping[str, Any], load_models: Callable[[set[str]], Mapping[str, Params]]
) -> None:
    """Refuse a config whose serverless variant is combined with what serverless does not support."""
    variants = params["ProductionVariants"]
    serverless = [v for v in variants if "ServerlessConfig" in v]
    if not serverless:
        return
    name = params["EndpointConfigName"]
    if len(variants) > 1:
        raise ValidationException(
            f"Endpoint config {name} has {len(variants)} production variants and variant "
            f"{serverless[0]['VariantName']} is serverless; a serverless endpoint config has exactly one "
            "production variant. Create one endpoint per serverless variant."
        )
    for member, feature in _CONFIG_MEMBERS.items():
        if params.get(member):
            raise ValidationException(
                f"Endpoint config {name} sets {member} with a serverless variant; serverless endpoints do "
                f"not support {feature}. Remove {member}, or use an instance-based variant."
            )
    model_name = serverless[0].get("ModelName", "")
    model = load_models({model_name}).get(model_name)
    if model is not None:
        _check_model(model)


def _check_model(model: Params) -> None:
    name = model["ModelName"]
    containers = [model["PrimaryContainer"]] if "PrimaryContainer" in model else model.get("Containers") or []
    if len(containers) > 1:
        raise ValidationException(
            f"Model {name} has {len(containers)} containers; serverless endpoints do not support inference "
            "pipelines or multi-container models. Use a model with one PrimaryContainer."
        )
    if any(c.get("Mode") == "MultiModel" for c in containers):
        raise ValidationException(
            f"Model {name} uses Mode=MultiModel; serverless endpoints do not support multi-model endpoints. "
            "Use Mode=SingleModel."
        )
    if any(c.get("ModelDataSource") for c in containers):
        raise ValidationException(
            f"Model {name} gives its model data as ModelDataSource; serverless endpoints do not support "
            "ModelDataSource. Give the model data as a ModelDataUrl archive (model.tar.gz) instead."
        )
    for member, feature in _MODEL_MEMBERS.items():
        if model.get(member):
            raise ValidationException(
                f"Model {name} sets {member}; serverless endpoints do not support {feature}. Use a model "
                f"without {member}."
            )


def serverless_update(variant: str, config: Params, update: Params | None) -> Params:
    """The MaxConcurrency / ProvisionedConcurrency a variant has after `update` (a
    ServerlessUpdateConfig, or None to keep `config`), checked as CreateEndpointConfig checks them."""
    merged: Params = {k: config[k] for k in ("MaxConcurrency", "ProvisionedConcurrency") if k in config}
    if update is not None:
        if not update:
            raise ValidationException(
                f"Variant {variant}: ServerlessUpdateConfig is empty; give MaxConcurrency, "
                "ProvisionedConcurrency or both."
            )
        merged.update(update)
    check_provisioned(f"Variant {variant}: ", merged)
    return merged


def check_provisioned(label: str, config: Params) -> None:
    """Refuse a ProvisionedConcurrency above MaxConcurrency; `label` starts the message."""
    provisioned = config.get("ProvisionedConcurrency")
    if provisioned is not None and provisioned > config["MaxConcurrency"]:
        raise ValidationException(
            f"{label}ProvisionedConcurrency ({provisioned}) must not exceed "
            f"MaxConcurrency ({config['MaxConcurrency']})."
        )
