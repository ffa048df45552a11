"""Model artifacts: fetch, safely unpack and cache model data, and build per-model Python environments."""

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.prepare import PreparedModel, prepare_model
from moorage.artifacts.unpack import UnpackLimits

__all__ = ["ArtifactError", "PreparedModel", "UnpackLimits", "prepare_model"]
