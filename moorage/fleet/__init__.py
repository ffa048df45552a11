"""Fleets: the instances behind an endpoint's production variants, and the one place that changes them.

Creating, updating, replacing, resizing and retiring instances all go through `VariantFleet` and
`EndpointFleet`; the reconciler (endpoint status), capacity changes and autoscaling call them rather than
starting or stopping instances themselves."""

from moorage.fleet.deploy import deploy_fleet
from moorage.fleet.endpoint import EndpointFleet
from moorage.fleet.plan import DeploymentFailed
from moorage.fleet.settings import FleetContext, FleetSettings
from moorage.fleet.variant import VariantFleet

__all__ = [
    "DeploymentFailed",
    "EndpointFleet",
    "FleetContext",
    "FleetSettings",
    "VariantFleet",
    "deploy_fleet",
]
