"""A photo input fires change twice for one upload (Gradio 6.31, with a photo already shown): the
repeat for the same session, file and role is answered by the face just prepared, and only then."""

from __future__ import annotations

import shutil

import pytest

from idface.engine import Engine
from idface.ui.handlers import Handlers


@pytest.fixture(scope="module")
def counted():
    """(handlers, calls): real Handlers on a real Engine whose prepare calls are counted."""
    engine = Engine(load_generator=False)
    calls = []
    prepare = engine.prepare

    def counting(photo, what="face", **kwargs):
        calls.append(str(photo))
        return prepare(photo, what, **kwargs)

    engine.prepare = counting
    return Handlers(engine), calls


def test_a_repeated_upload_is_prepared_once_per_session_and_role(counted, faces_dir, tmp_path):
    handlers, calls = counted
    upload = tmp_path / "visitor.jpg"  # a visitor's file (not a bundled example's bytes: those are cached apart)
    shutil.copyfile(faces_dir / "obama2.jpg", upload)
    upload.write_bytes(upload.read_bytes() + b"\0")  # new bytes, same picture
    n = len(calls)
    first, msg, crop = handlers.prepare_face(str(upload), "style face", "session-a")
    assert first is not None and crop is not None and len(calls) == n + 1
    again, msg2, _ = handlers.prepare_face(str(upload), "style face", "session-a")
    assert again is first and msg2 == msg and len(calls) == n + 1  # the repeat: a lookup
    other_session, _, _ = handlers.prepare_face(str(upload), "style face", "session-b")
    other_role, _, _ = handlers.prepare_face(str(upload), "identity face", "session-a")
    no_session, _, _ = handlers.prepare_face(str(upload), "style face")
    assert len(calls) == n + 4  # each prepared anew
    assert other_session is not first and other_role is not first and no_session is not first


def test_the_remembered_face_expires(counted, faces_dir, tmp_path, monkeypatch):
    handlers, calls = counted
    upload = tmp_path / "visitor.jpg"
    upload.write_bytes((faces_dir / "biden.jpg").read_bytes() + b"\0")
    handlers.prepare_face(str(upload), "style face", "session-c")
    n = len(calls)
    import idface.ui.handlers as module

    clock = module.time.monotonic() + handlers.recent.keep_s + 1
    monkeypatch.setattr(module.time, "monotonic", lambda: clock)
    handlers.prepare_face(str(upload), "style face", "session-c")
    assert len(calls) == n + 1 and not [k for k in handlers.recent.faces if k[0] != "session-c"]
