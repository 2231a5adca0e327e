"""App test set-up: a small "tiny"-preset checkpoint made in a temporary folder (plumbing: random
weights, right shapes; until a trained checkpoint exists), an engine on it, and the app launched
on loopback."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # app.py lives at the repository root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_plumbing_checkpoint(folder) -> None:
    """A random "tiny" model. Zero-initialised layers (the attention output projections) get small
    noise, so the output depends on the style codes and identity token as a trained model's does."""
    import torch

    from idface.model import IdFaceModel

    torch.manual_seed(0)
    model = IdFaceModel("tiny")
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.2)
    model.save_pretrained(folder)


@pytest.fixture(scope="session")
def plumbing_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plumbing_checkpoint")
    make_plumbing_checkpoint(folder)
    return folder


@pytest.fixture(scope="session")
def plumbing_engine(plumbing_checkpoint):
    from idface.engine import Engine

    return Engine(checkpoint=str(plumbing_checkpoint))


class RecordingEngine:
    """Wraps an engine's generate to keep the label maps the server received."""

    def __init__(self, engine):
        self.label_maps = []
        original = engine.generate

        def generate(label_map, *args, **kwargs):
            self.label_maps.append(label_map.copy())
            return original(label_map, *args, **kwargs)

        engine.generate = generate


@pytest.fixture(scope="session")
def launched_app(plumbing_engine):
    """(url, recorder): the demo on 127.0.0.1 with the plumbing checkpoint."""
    import app

    recorder = RecordingEngine(plumbing_engine)
    demo = app.build_demo(plumbing_engine)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                            quiet=True, **app.LAUNCH_KWARGS)
    yield url, recorder
    demo.close()
