"""Test support shared by tests/ and scripts/ (installed with the package, so scripts never import
from tests/). Nothing in idface's library code imports this package.

- free_port(): a free loopback TCP port.
- make_plumbing_checkpoint(folder): a random-weight checkpoint of a preset (plumbing, not faces).
- browser: the app driven as a browser does (Playwright pages, or the page's HTTP protocol).
- rawdata: a tiny data set in the CelebAMask-HQ release layout.
"""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_plumbing_checkpoint(folder: str | Path, preset: str = "tiny", identity_gain: float = 1.0) -> None:
    """Random weights of a preset, saved as a checkpoint: every step runs at that preset's cost, the
    images are not faces. Zero-initialised layers (the attention output projections) get small
    noise, so the output depends on the style codes and the identity token as a trained model's
    does; identity_gain > 1 scales the identity projection's output layer so that different
    identities give visibly different outputs."""
    import torch

    from idface.model import IdFaceModel

    torch.manual_seed(0)
    model = IdFaceModel(preset)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.2)
        if identity_gain != 1.0:
            for p in model.identity_projection.mlp[-1].parameters():
                p.mul_(identity_gain)
    model.save_pretrained(folder)
