"""The SageMaker control plane's operation table (`X-Amz-Target: SageMaker.<Op>`)."""

from __future__ import annotations

from moorage.api.json_service import Operation, on_store
from moorage.control import endpoint_configs, models, tags
from moorage.control.endpoints import Endpoints
from moorage.control.transform_jobs import TransformJobs
from moorage.store import Store


def operations(store: Store, endpoints: Endpoints, transform_jobs: TransformJobs) -> dict[str, Operation]:
    return {
        "CreateModel": on_store(store, models.create_model),
        "DescribeModel": on_store(store, models.describe_model),
        "ListModels": on_store(store, models.list_models),
        "DeleteModel": on_store(store, models.delete_model),
        "CreateEndpointConfig": on_store(store, endpoint_configs.create_endpoint_config),
        "DescribeEndpointConfig": on_store(store, endpoint_configs.describe_endpoint_config),
        "ListEndpointConfigs": on_store(store, endpoint_configs.list_endpoint_configs),
        "DeleteEndpointConfig": on_store(store, endpoint_configs.delete_endpoint_config),
        "CreateEndpoint": endpoints.create,
        "DescribeEndpoint": endpoints.describe,
        "ListEndpoints": endpoints.list,
        "UpdateEndpoint": endpoints.update,
        "UpdateEndpointWeightsAndCapacities": endpoints.update_weights_and_capacities,
        "DeleteEndpoint": endpoints.delete,
        "AddTags": on_store(store, tags.add_tags),
        "ListTags": on_store(store, tags.list_tags),
        "DeleteTags": on_store(store, tags.delete_tags),
        "CreateTransformJob": transform_jobs.create,
        "DescribeTransformJob": transform_jobs.describe,
        "ListTransformJobs": transform_jobs.list,
        "StopTransformJob": transform_jobs.stop,
    }
