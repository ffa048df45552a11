"""Images without Docker: what a Model's image URI becomes on this server.

frameworks.py  SageMaker framework image URIs → pinned PyPI packages for the built-in runtime
dockerfile.py  the Python-environment subset of a Dockerfile; everything else refused by line
toolkit.py     commands that only start the SageMaker inference toolkit's model server
registry.py    `moorage image add` registrations in the state store
resolve.py     resolve_image(uri, registry) → ImageRuntime, called when a model is prepared
"""

from moorage.images.registry import ImageError, ImageLookup, ImageRegistry, RegisteredImage
from moorage.images.resolve import ImageRuntime, resolve_image

__all__ = ["ImageError", "ImageLookup", "ImageRegistry", "ImageRuntime", "RegisteredImage", "resolve_image"]
