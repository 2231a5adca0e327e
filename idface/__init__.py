"""idface: identity-aware semantic face synthesis and adversarial identity injection.

Reference implementation of Tarollo et al., "Adversarial Identity Injection for Semantic Face
Image Synthesis" (CVPR 2024 Workshops). The layers, from the bottom up (README: Architecture):
errors, labels, images, weights, hub -> faces, identity, model -> pipeline, conceal, training,
evaluation -> engine, outputs (the service) -> CLIs -> ui/ and app.py.

    from idface import Engine, IdFacePipeline, conceal, get_recognizer, prepare_face

Names are imported on first use, so `import idface` stays cheap (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "IdfaceError": "idface.errors",
    "InputError": "idface.errors",
    "NoFaceError": "idface.errors",
    "UnavailableError": "idface.errors",
    "WeightsNotFoundError": "idface.errors",
    "load_image": "idface.images",
    "load_mask": "idface.images",
    "prepare_face": "idface.faces",
    "get_recognizer": "idface.identity.registry",
    "recognizer_status": "idface.identity.registry",
    "IdFaceModel": "idface.model",
    "IdFacePipeline": "idface.pipeline",
    "conceal": "idface.conceal",
    "PhotoAttackSettings": "idface.conceal",
    "TokenAttackSettings": "idface.conceal",
    "Engine": "idface.engine",
    "generate_from_photos": "idface.engine",
    "save_synthetic_png": "idface.outputs",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'idface' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for editors and type checkers
    from idface.conceal import PhotoAttackSettings, TokenAttackSettings, conceal  # noqa: F401
    from idface.engine import Engine, generate_from_photos  # noqa: F401
    from idface.errors import IdfaceError, InputError, NoFaceError, UnavailableError, WeightsNotFoundError  # noqa: F401
    from idface.faces import prepare_face  # noqa: F401
    from idface.identity.registry import get_recognizer, recognizer_status  # noqa: F401
    from idface.images import load_image, load_mask  # noqa: F401
    from idface.model import IdFaceModel  # noqa: F401
    from idface.outputs import save_synthetic_png  # noqa: F401
    from idface.pipeline import IdFacePipeline  # noqa: F401
