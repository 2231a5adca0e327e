"""A random "tiny"-preset base checkpoint for fitting tests (64 px: a step takes milliseconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

TRAIN = ROOT / "assets" / "train"


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """(folder, model): a random "tiny" checkpoint whose zero-initialised attention output
    projections get small noise, so the output depends on the codes as a trained model's does."""
    import torch

    from idface.model import IdFaceModel

    torch.manual_seed(0)
    model = IdFaceModel("tiny")
    with torch.no_grad():
        for block in model.generator.transformer_blocks:
            block.proj_out.weight.normal_(0.0, 0.2)
    folder = tmp_path_factory.mktemp("tiny_base")
    model.save_pretrained(folder)
    return folder, IdFaceModel.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def aligned_face():
    """(aligned [256, 256, 3] uint8, label map [256, 256]) of a bundled face, already in the frame."""
    from idface.images import load_image, load_mask

    return load_image(TRAIN / "biden.png"), load_mask(TRAIN / "biden_mask.png")


@pytest.fixture(scope="session")
def dlib_port():
    from idface.identity.registry import get_recognizer

    return get_recognizer("dlib-resnet")


@pytest.fixture(scope="session")
def face_embedding(dlib_port, aligned_face) -> np.ndarray:
    """The recognizer's embedding of aligned_face, as the engine computes it."""
    from idface.fitting.fit import embed

    return embed(dlib_port, aligned_face[0]).numpy()
