"""What CreateEndpointConfig refuses about ShadowProductionVariants, as SageMaker documents it: one
production variant and one shadow variant, instance-based, each serving one model in one container, and
not on an asynchronous endpoint. Refused here so nothing fails later at deployment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from moorage.api.errors import ValidationException, not_found

Params = dict[str, Any]


def check_shadow_config(
    params: Mapping[str, Any],
    load_models: Callable[[set[str]], Mapping[str, Params]],
    model_arn: Callable[[str], str],
) -> None:
    """Refuse an endpoint config whose shadow variants SageMaker would not accept."""
    shadows: list[Params] = params.get("ShadowProductionVariants") or []
    if not shadows:
        return
    name = params["EndpointConfigName"]
    production: list[Params] = params["ProductionVariants"]
    if len(production) != 1 or len(shadows) != 1:
        raise ValidationException(
            f"Endpoint config {name} has {len(production)} production variant(s) and {len(shadows)} shadow "
            "variant(s); with ShadowProductionVariants an endpoint config has exactly one production variant "
            "and one shadow variant. Create one endpoint config per production and shadow pair."
        )
    shadow = shadows[0]
    if shadow["VariantName"] == production[0]["VariantName"]:
        raise ValidationException(
            f"Endpoint config {name}: the shadow variant and the production variant are both named "
            f"{shadow['VariantName']}; variant names must be unique across ProductionVariants and "
            "ShadowProductionVariants. Rename the shadow variant."
        )
    if params.get("AsyncInferenceConfig"):
        raise ValidationException(
            f"Endpoint config {name} sets AsyncInferenceConfig and ShadowProductionVariants; shadow variants "
            "are not supported on asynchronous endpoints. Remove one or the other."
        )
    for variant in (*production, shadow):
        if "ServerlessConfig" in variant:
            raise ValidationException(
                f"Endpoint config {name}: variant {variant['VariantName']} is serverless; shadow variants "
                "are not supported with serverless inference. Give both variants InstanceType and "
                "InitialInstanceCount."
            )
    for member in ("ModelName", "InstanceType", "InitialInstanceCount"):
        if member not in shadow:
            raise ValidationException(
                f"Shadow variant {shadow['VariantName']} of endpoint config {name} needs {member}, as a "
                "production variant does."
            )
    models = load_models({production[0]["ModelName"], shadow["ModelName"]})
    if shadow["ModelName"] not in models:
        raise ValidationException(not_found("model", model_arn(shadow["ModelName"])))
    for variant in (*production, shadow):
        model = models.get(variant["ModelName"])
        if model is not None:
            _check_model(name, variant["VariantName"], model)


def _check_model(config: str, variant: str, model: Params) -> None:
    """Shadow tests exclude multi-model endpoints and multi-container models (pipelines, Direct)."""
    containers = [model["PrimaryContainer"]] if "PrimaryContainer" in model else model.get("Containers") or []
    direct = (model.get("InferenceExecutionConfig") or {}).get("Mode") == "Direct"
    if len(containers) > 1 or direct:
        raise ValidationException(
            f"Endpoint config {config}: variant {variant} serves model {model['ModelName']}, a "
            "multi-container model (an inference pipeline, or Direct invocation); shadow variants are not "
            "supported with multi-container models. Use a model with one PrimaryContainer."
        )
    if any(c.get("Mode") == "MultiModel" for c in containers):
        raise ValidationException(
            f"Endpoint config {config}: variant {variant} serves model {model['ModelName']}, which uses "
            "Mode=MultiModel; shadow variants are not supported on multi-model endpoints. Use a "
            "single-model container."
        )
