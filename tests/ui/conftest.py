"""App test set-up: a small "tiny"-preset checkpoint made in a temporary folder (plumbing: random
weights, right shapes; until a trained checkpoint exists), an engine on it, and the app launched
on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from idface.testing import free_port, make_plumbing_checkpoint

ROOT = Path(__file__).resolve().parents[2]


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
