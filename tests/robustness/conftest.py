"""Robustness test set-up: the app launched on loopback with a random "tiny" checkpoint (as in
tests/ui) and a fast heartbeat, so "freed when the visitor leaves" happens within a second; the
upload-deletion test launches its own copy with a schedule of seconds."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def robust_checkpoint(tmp_path_factory) -> Path:
    from idface.testing import make_plumbing_checkpoint

    folder = tmp_path_factory.mktemp("robust_checkpoint")
    make_plumbing_checkpoint(folder)
    return folder


@pytest.fixture(scope="session")
def robust_engine(robust_checkpoint):
    from idface.engine import Engine

    return Engine(checkpoint=str(robust_checkpoint))


@contextmanager
def launched(engine, delete_cache: str | None = None):
    """The demo on 127.0.0.1 with a 0.25 s heartbeat (and IDFACE_DELETE_CACHE when given);
    yields (url, demo)."""
    import app
    from idface.testing import free_port

    saved = {k: os.environ.get(k) for k in ("IDFACE_DELETE_CACHE", "GRADIO_HEARTBEAT_INTERVAL")}
    if delete_cache:
        os.environ["IDFACE_DELETE_CACHE"] = delete_cache
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "0.25"
    try:
        demo = app.build_demo(engine)
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                quiet=True, **app.LAUNCH_KWARGS)
        try:
            yield url, demo
        finally:
            demo.close()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def launch_app():
    """The `launched` context manager, for tests that need the app with other settings."""
    return launched


@pytest.fixture(scope="module")
def robust_app(robust_engine):
    """(url, demo): the app with its default upload-deletion schedule."""
    with launched(robust_engine) as served:
        yield served
