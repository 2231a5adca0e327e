"""The "fit the generator to this face" panel: one button under the style face, a progress bar
with the time left, a cancel button, and a line saying which weights the result shows.

Why a button and not automatic: fitting takes about 15 s of the server's CPU, and a visitor who is
only trying example faces or several uploads should not wait (or queue others) for each; the
button says what it does and how long it takes, and the result says whether it shows the base
checkpoint or weights fitted to this face.

Fitted weights live only in the visitor's session: a FitStore in a gr.State (time_to_live, freed on
unload; delete_callback drops the engine's materialised copy), at most FITS_PER_SESSION faces and
FIT_BYTES_PER_SESSION bytes of fp16 deltas, keyed by the uploaded photo's content hash so that
uploading the same photo again reuses its fit. The PreparedFace in the style state points at its
FittedFace; the engine generates with base + deltas only for that face, so one session's fit never
changes another session's output. Fitting has its own concurrency group (IDFACE_FIT_CONCURRENCY,
default 1) and no public API endpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from typing import Any

import gradio as gr
import numpy as np

from idface.errors import IdfaceError
from idface.engine import Engine, PreparedFace
from idface.ui.handlers import ExampleFaces
from idface.ui.sessions import SESSION_TTL_S

log = logging.getLogger(__name__)

FITS_PER_SESSION = int(os.environ.get("IDFACE_FITS_PER_SESSION", "2"))
FIT_BYTES_PER_SESSION = int(os.environ.get("IDFACE_FIT_BYTES_PER_SESSION", str(16 * 2**20)))
FIT_CONCURRENCY = int(os.environ.get("IDFACE_FIT_CONCURRENCY", "1"))
FIT_SECONDS = float(os.environ.get("IDFACE_FIT_SECONDS", "18"))

BUTTON_LABEL = f"Fit the generator to this face (about {FIT_SECONDS:.0f} s)"
BASE_TEXT = ("**Weights: base checkpoint.** It was trained on the bundled example faces only; for any "
             "other face press *Fit* to tune a private copy of the generator to it (kept only during your visit).")
EXAMPLE_TEXT = "**Weights: base checkpoint**, trained on this bundled example: no fitting needed."


class FitStore:
    """One visitor's fitted faces: photo key -> FittedFace, bounded in count and bytes (least
    recently used dropped first), plus the event that cancels their running fit."""

    def __init__(self, engine: Engine | None = None, max_items: int = FITS_PER_SESSION,
                 max_bytes: int = FIT_BYTES_PER_SESSION):
        self.engine = engine
        self.max_items, self.max_bytes = max_items, max_bytes
        self.items: OrderedDict[str, Any] = OrderedDict()
        self.cancel = threading.Event()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self.items.values())

    def get(self, key: str):
        fitted = self.items.get(key)
        if fitted is not None:
            self.items.move_to_end(key)
        return fitted

    def put(self, fitted) -> None:
        self.items[fitted.key] = fitted
        self.items.move_to_end(fitted.key)
        while len(self.items) > self.max_items or (len(self.items) > 1 and self.nbytes > self.max_bytes):
            self._drop(next(iter(self.items)))

    def _drop(self, key: str) -> None:
        fitted = self.items.pop(key)
        if self.engine is not None:
            self.engine.forget_fitted(fitted)

    def clear(self) -> None:
        """Free everything (the session expired or the visitor left)."""
        self.cancel.set()
        for key in list(self.items):
            self._drop(key)


def free_store(store: FitStore | None) -> None:
    """gr.State delete_callback."""
    if store is not None:
        store.clear()


def fitted_text(summary: dict) -> str:
    return (f"**Weights: fitted to this face** (only for your visit): face PSNR {summary['psnr_face_before']:.1f} → "
            f"{summary['psnr_face_after']:.1f} dB in {summary['seconds']:.0f} s. Mask edits use these weights; "
            "another style face goes back to the base checkpoint. With another person's identity face the first "
            "image takes a few seconds more: the fitted copy practises that face's token, so that face "
            "recognition reads that person.")


class FitPanel:
    """Build inside the faces column (after the style face); wire once the style events exist."""

    def __init__(self, engine: Engine, example_paths: list[str]):
        from idface.fitting import FitConfig

        self.engine = engine
        self.config = FitConfig(max_seconds=FIT_SECONDS)
        self.examples = ExampleFaces.for_engine(engine, example_paths)  # the page's prepared examples
        self.store = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=free_store)
        self.info = gr.Markdown(BASE_TEXT if engine.generator_ready else "", elem_id="fit_info")
        with gr.Row():
            self.button = gr.Button(BUTTON_LABEL, size="sm", variant="primary", elem_id="fit_button",
                                    visible=engine.generator_ready)
            self.cancel = gr.Button("Cancel fitting", size="sm", elem_id="fit_cancel", visible=False)

    # ---- handlers (plain values in and out) ----
    def on_style(self, image: np.ndarray | None, style: PreparedFace | None, store: FitStore | None):
        """A new style face: reuse this session's fit of the same photo, say which weights apply.
        -> style state, store, info, fit button."""
        store = FitStore(self.engine) if store is None else store  # (an empty store is falsy)
        if style is None or not self.engine.generator_ready:
            return style, store, BASE_TEXT if self.engine.generator_ready else "", gr.update(visible=False)
        cached = store.get(self.key(image, style))
        if cached is not None:
            return dataclasses.replace(style, fitted=cached), store, fitted_text(cached.summary), gr.update(visible=False)
        example = self.examples.contains(image)  # the bundled example's very bytes
        return (style, store, EXAMPLE_TEXT if example else BASE_TEXT,
                gr.update(visible=True, value=BUTTON_LABEL if not example else "Fit anyway (about "
                          f"{FIT_SECONDS:.0f} s)"))

    @staticmethod
    def key(image: np.ndarray | None, style: PreparedFace) -> str:
        """The cache key: the uploaded photo's content hash (preparing the same photo twice can
        differ in the last bits), or the prepared face's when the photo is not at hand."""
        from idface.fitting import photo_key

        if isinstance(image, (str, os.PathLike)):  # the page hands over the uploaded file's path
            with open(image, "rb") as fh:
                return photo_key(np.frombuffer(fh.read(), dtype=np.uint8))
        return photo_key(np.asarray(image)) if image is not None else photo_key(style.aligned, style.label_map)

    def fit(self, image: np.ndarray | None, style: PreparedFace | None, store: FitStore | None,
            progress=gr.Progress()):
        """-> style state (with its FittedFace), store, info, fit button, cancel button."""
        from idface.fitting import FitCancelled, FittedFace, WeightDelta, fit_prepared

        store = FitStore(self.engine) if store is None else store  # (an empty store is falsy)
        keep = (style, store)
        if style is None:
            return (*keep, "**Problem:** pick a style face first.", gr.update(), gr.update(visible=False))
        if not self.engine.generator_ready:
            return (*keep, self.engine.generator_help, gr.update(visible=False), gr.update(visible=False))
        key = self.key(image, style)
        cached = store.get(key)
        if cached is not None:
            return (dataclasses.replace(style, fitted=cached), store, fitted_text(cached.summary),
                    gr.update(visible=False), gr.update(visible=False))
        base = self.engine.pipeline.model
        name = base.config.identity_recognizer
        recognizer = self.engine.recognizers().get(name)
        self.engine.embed_missing(style, [name])  # (a new face's embeddings may still be on their way)
        store.cancel.clear()

        def report(p) -> None:
            eta = "" if p.eta is None else f", about {p.eta:.0f} s left"
            what = {"codes": "style codes", "generator": "tuning the generator"}.get(p.stage, p.stage)
            progress(p.fraction, desc=f"Fitting: {what}{eta}")

        try:
            result = fit_prepared(base, style.aligned, style.label_map, style.embeddings.get(name),
                                  self.config, recognizer=recognizer,
                                  base_label=self.engine.checkpoint_label, progress=report, cancel=store.cancel)
        except FitCancelled:
            return (*keep, "Fitting cancelled. " + BASE_TEXT, gr.update(visible=True), gr.update(visible=False))
        except IdfaceError as err:
            return (*keep, f"**Problem:** {err}", gr.update(visible=True), gr.update(visible=False))
        except Exception:  # a bug, not the visitor's input: keep the page alive, details in the log
            log.exception("fitting failed")
            return (*keep, "**Problem:** fitting failed on the server; the error is in its log.",
                    gr.update(visible=True), gr.update(visible=False))
        fitted = FittedFace(key, WeightDelta.between(base, result.model), result.summary())
        store.put(fitted)
        return (dataclasses.replace(style, fitted=fitted), store, fitted_text(fitted.summary),
                gr.update(visible=False), gr.update(visible=False))

    @staticmethod
    def request_cancel(store: FitStore | None):
        """-> the cancel button (not the info line: the fit's own answer may arrive first)."""
        if store is not None:
            store.cancel.set()
        return gr.update(value="Cancelling…", interactive=False)

    # ---- wiring ----
    @property
    def style_outputs(self) -> list:
        """What on_style returns after the style state (the page's style-face step lists these)."""
        return [self.store, self.info, self.button]

    def wire(self, style_in, style_state, regenerate_after) -> None:
        shown = self.button.click(lambda: (gr.update(visible=False),
                                           gr.update(visible=True, value="Cancel fitting", interactive=True)), None,
                                  [self.button, self.cancel], api_visibility="private", queue=False)
        fitting = shown.then(
            self.fit, [style_in, style_state, self.store],
            [style_state, self.store, self.info, self.button, self.cancel],
            show_progress_on=[self.info], api_visibility="private",
            concurrency_limit=FIT_CONCURRENCY, concurrency_id="fit",
        )
        regenerate_after(fitting)
        self.cancel.click(self.request_cancel, self.store, self.cancel, api_visibility="private", queue=False)
