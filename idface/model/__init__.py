"""Networks: style encoder, identity token projection, mask embedder + generator (and the
discriminator used in training). `IdFaceModel` bundles the inference parts as one Hub checkpoint."""

from idface.model.config import PRESETS, ModelConfig, get_config
from idface.model.generator import ContextKV, Generator, LayerAttention
from idface.model.idface_model import CheckpointMismatchError, IdFaceModel, count_parameters, read_config
from idface.model.style_encoder import IdentityProjection, StyleEncoder

__all__ = [
    "PRESETS", "ModelConfig", "get_config", "ContextKV", "Generator", "LayerAttention",
    "CheckpointMismatchError", "IdFaceModel", "count_parameters", "read_config",
    "IdentityProjection", "StyleEncoder",
]
