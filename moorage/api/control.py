"""The SageMaker control plane's operation table (`X-Amz-Target: SageMaker.<Op>`)."""

from __future__ import annotations

from functools import partial

from moorage.api.json_service import Operation
from moorage.control import endpoint_configs, models, tags
from moorage.control.endpoints import Endpoints
from moorage.store import Store


def operations(store: Store, endpoints: Endpoints) -> dict[str, Operation]:
    return {
        "CreateModel": partial(models.create_model, store),
        "DescribeModel": partial(models.describe_model, store),
        "ListModels": partial(models.list_models, store),
        "DeleteModel": partial(models.delete_model, store),
        "CreateEndpointConfig": partial(endpoint_configs.create_endpoint_config, store),
        "DescribeEndpointConfig": partial(endpoint_configs.describe_endpoint_config, store),
        "ListEndpointConfigs": partial(endpoint_configs.list_endpoint_configs, store),
        "DeleteEndpointConfig": partial(endpoint_configs.delete_endpoint_config, store),
        "CreateEndpoint": endpoints.create,
        "DescribeEndpoint": endpoints.describe,
        "ListEndpoints": endpoints.list,
        "UpdateEndpoint": endpoints.update,
        "UpdateEndpointWeightsAndCapacities": endpoints.update_weights_and_capacities,
        "DeleteEndpoint": endpoints.delete,
        "AddTags": partial(tags.add_tags, store),
        "ListTags": partial(tags.list_tags, store),
        "DeleteTags": partial(tags.delete_tags, store),
    }
