"""Safe deployment: UpdateEndpoint's DeploymentConfig carried out as SageMaker's deployment guardrails
(docs/deployment.md): blue/green with all-at-once, canary or linear traffic shifting, rolling updates,
and automatic rollback on CloudWatch alarms and on MaximumExecutionTimeoutInSeconds."""

from moorage.control.deployment.engine import Deployer
from moorage.control.deployment.progress import PENDING, Deployment, VariantState, live_states, split_live
from moorage.control.deployment.update import deploy_update
from moorage.control.deployment.validation import check_alarms_exist, check_deployment_config

__all__ = [
    "PENDING",
    "Deployer",
    "Deployment",
    "VariantState",
    "check_alarms_exist",
    "check_deployment_config",
    "deploy_update",
    "live_states",
    "split_live",
]
