"""botocore's own service models, loaded once: the single source of every shape Moorage parses or writes.

A model that is wrong for our purposes is corrected here as data (``SPEC_PATCHES``), never by special cases in
the protocol code.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from botocore.loaders import create_loader
from botocore.model import ServiceModel

# service name -> shape name -> keys merged into that shape's definition (e.g. {"max": 100}).
# Model data may also live on this machine: `file://` URLs and plain paths are accepted beside s3:// and https://.
_LOCAL_OR_REMOTE = r"^((https|s3)://([^/]+)/?(.*)|file://.+|[^:]+)$"
SPEC_PATCHES: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "sagemaker": {
        "Url": {"pattern": _LOCAL_OR_REMOTE},
        "S3ModelUri": {"pattern": _LOCAL_OR_REMOTE},
        "S3Uri": {"pattern": _LOCAL_OR_REMOTE},  # batch transform input and output
        # AsyncInferenceConfig's S3OutputPath / S3FailurePath (and DataCaptureConfig's destination)
        "DestinationS3Uri": {"pattern": _LOCAL_OR_REMOTE},
    },
    # InvokeEndpointAsync's InputLocation: an object in the server's S3 store, or a file on its disk
    "sagemaker-runtime": {"InputLocationHeader": {"pattern": _LOCAL_OR_REMOTE}},
}


@functools.cache
def load_service(name: str) -> ServiceModel:
    """The botocore model for ``name`` ("sagemaker", "sagemaker-runtime", "application-autoscaling")."""
    description = create_loader().load_service_model(name, "service-2")
    shapes = description["shapes"]
    for shape_name, changes in SPEC_PATCHES.get(name, {}).items():
        shapes[shape_name] = {**shapes[shape_name], **changes}
    return ServiceModel(description, service_name=name)
