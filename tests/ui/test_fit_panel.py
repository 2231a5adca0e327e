"""The app's fit panel: per-session storage is bounded and freed, a session's fitted weights change
only that session's output, the same photo reuses its fit, and fitting has no public endpoint."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from idface.fitting import FitConfig
from idface.engine import PreparedFace
from idface.ui.fit_panel import BASE_TEXT, FitPanel, FitStore, free_store
from idface.ui.sessions import SESSION_TTL_S

TRAIN = Path(__file__).resolve().parents[2] / "assets" / "train"


class Fitted:
    def __init__(self, key: str, nbytes: int):
        self.key, self.nbytes = key, nbytes


class Forgetting:
    def __init__(self):
        self.forgotten = []

    def forget_fitted(self, fitted) -> None:
        self.forgotten.append(fitted.key)


def test_fit_store_is_bounded_in_count_and_bytes_and_freed():
    engine = Forgetting()
    store = FitStore(engine, max_items=2, max_bytes=10)
    store.put(Fitted("a", 4))
    store.put(Fitted("b", 4))
    assert store.get("a") is not None                       # a is now the most recent
    store.put(Fitted("c", 4))                               # count bound: b (least recent) goes
    assert set(store.items) == {"a", "c"} and engine.forgotten == ["b"]
    store.put(Fitted("d", 9))                               # bytes bound: a and c go, d stays alone
    assert list(store.items) == ["d"] and store.nbytes == 9
    free_store(store)                                       # session expired / visitor left
    assert len(store) == 0 and store.cancel.is_set() and engine.forgotten[-1] == "d"
    free_store(None)


def prepared(engine, name: str) -> PreparedFace:
    from idface.images import load_image, load_mask

    image, label = load_image(TRAIN / f"{name}.png"), load_mask(TRAIN / f"{name}_mask.png")
    face = PreparedFace(image, label, "", 1)
    face.embeddings = {k: v[0] for k, v in engine._embed_frames([image]).items()}
    return face


@pytest.fixture(scope="module")
def panel(plumbing_engine):
    with gr.Blocks():
        panel = FitPanel(plumbing_engine, [])
    panel.config = FitConfig(code_steps=3, steps=6, max_seconds=None)
    return panel


def test_cancel_reaches_the_running_fit(plumbing_engine, panel):
    store = FitStore(plumbing_engine)

    def progress(*args, **kwargs):                         # the visitor presses Cancel mid-fit
        panel.request_cancel(store)

    style = prepared(plumbing_engine, "obama")
    out, returned, info, button, _ = panel.fit(None, style, store, progress=progress)
    assert returned is store and out.fitted is None and len(store) == 0
    assert info.startswith("Fitting cancelled") and button["visible"] is True


def test_fit_state_expires_with_the_session(panel):
    assert panel.store.time_to_live == SESSION_TTL_S and panel.store.delete_callback is free_store


@pytest.mark.slow
def test_a_fitted_session_does_not_change_another_sessions_output(plumbing_engine, panel):
    engine = plumbing_engine
    other = prepared(engine, "biden")                      # visitor 1: the same photo, not fitted
    mine = prepared(engine, "biden")                       # visitor 2: fits it
    photo = mine.aligned.copy()                            # what the upload decoded to
    lm = other.label_map
    before = engine.generate(lm, other, other).image

    session_store = FitStore(engine)                     # made when the style face arrived (empty)
    style, store, info, *_ = panel.fit(photo, mine, session_store, progress=lambda *a, **k: None)
    assert store is session_store                          # the session's own store (its cancel event)
    assert style.fitted is not None and mine.fitted is None and len(store) == 1
    assert "fitted to this face" in info
    fitted = engine.generate(lm, style, style)
    assert fitted.settings["weights"] == "fitted to this style face"
    assert np.abs(fitted.image.astype(int) - before.astype(int)).mean() > 1

    after = engine.generate(lm, other, other)
    assert after.settings["weights"] == "base checkpoint"
    assert np.array_equal(after.image, before)             # visitor 1 sees exactly what they saw

    # visitor 2 uploads the same photo again: the fit is reused, not redone
    again, store2, info2, _ = panel.on_style(photo, prepared(engine, "biden"), store)
    assert store2 is store and again.fitted is style.fitted and "fitted" in info2
    # visitor 1's own (new) store knows nothing of it
    theirs, _, info1, _ = panel.on_style(photo, prepared(engine, "biden"), None)
    assert theirs.fitted is None and info1 == BASE_TEXT

    assert (id(style.fitted), None) in engine._fitted_pipelines
    free_store(store)                                      # visitor 2 leaves
    assert id(style.fitted) not in engine._fitted_pipelines and len(store) == 0


def test_fitting_is_not_a_public_endpoint(plumbing_engine):
    import app

    demo = app.build_demo(plumbing_engine)
    public = {d.api_name for d in demo.fns.values() if getattr(d, "api_visibility", "public") == "public"}
    assert "generate" in public and not any("fit" in (name or "") for name in public)
    fit_fns = [d for d in demo.fns.values() if getattr(d.fn, "__name__", "") == "fit"]
    assert fit_fns and all(d.concurrency_id == "fit" for d in fit_fns)


@pytest.mark.slow
def test_a_fitted_face_practises_another_persons_token_once(plumbing_engine, panel):
    from idface.fitting.inject import InjectConfig

    engine = plumbing_engine
    mine, identity = prepared(engine, "biden"), prepared(engine, "obama")
    style, *_ = panel.fit(None, mine, FitStore(engine), progress=lambda *a, **k: None)
    saved, engine.inject_config = engine.inject_config, InjectConfig(steps=4, max_seconds=None)
    try:
        first = engine.generate(style.label_map, style, identity)
        again = engine.generate(style.label_map, style, identity)
        own = engine.generate(style.label_map, style, style)          # the same person: nothing to practise
    finally:
        engine.inject_config = saved
    practice = first.settings["identity_practice"]
    assert practice["steps"] >= 1 and "practised the identity face's token" in first.settings["weights"]
    assert len(style.fitted.practised) == 1 and again.settings["identity_practice"] is practice   # done once
    assert np.array_equal(first.image, again.image)
    assert "identity_practice" not in own.settings and own.settings["weights"] == "fitted to this style face"
    key = next(iter(style.fitted.practised))
    assert (id(style.fitted), key) in engine._fitted_pipelines
    # a practice evicted (by a newer identity face) between practise_identity and pipeline_for: the plain fit
    assert engine.pipeline_for(style, "evicted-identity") is engine.pipeline_for(style, None)
    engine.forget_fitted(style.fitted)
    assert not any(f is style.fitted for f, _ in engine._fitted_pipelines.values())
