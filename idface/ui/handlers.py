"""Event handlers of the demo (app.py only wires them to components).

Each handler takes plain values and returns plain values or gr updates, and turns idface errors
into a one-line message for the visitor (never a stack trace). Uploaded photos live only in the
visitor's gr.State (PreparedFace) and Gradio's upload cache, which delete_cache empties; they are
never logged and never written into outputs.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from idface.errors import IdfaceError, InputError
from idface.images import load_mask
from idface.engine import FRAME_SIZE, Engine, Generation, PreparedFace, generate_from_photos
from idface.labels import CLASS_NAMES, DISPLAY_NAMES, IDENTITY_TOKEN, index_to_color
from idface.outputs import attention_overlay, jpeg_data_url, synthetic_png_file, upscale
from idface.threads import thread_local_torch_threads
from idface.ui.bars import identity_bars_html
from idface.ui.maskcodec import decode_label_map, encode_label_map

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FACES_DIR = ROOT / "assets" / "faces"
MASKS_DIR = ROOT / "assets" / "masks"


def example_faces() -> list[str]:
    return sorted(str(p) for p in FACES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def example_strip_html(paths: list[str], thumb: int = 72) -> str:
    """A row of small clickable thumbnails (inline JPEGs of the bundled public-domain photos)."""
    from PIL import Image

    from idface.outputs import jpeg_data_url

    items = []
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            img = img.convert("RGB")
            side = min(img.size)
            left, top = (img.width - side) // 2, max(0, (img.height - side) // 4)
            small = np.asarray(img.crop((left, top, left + side, top + side)).resize((thumb, thumb), Image.LANCZOS))
        name = Path(path).stem.replace("_", " ")
        items.append(f'<button type="button" class="ex" data-index="{i}" title="use {name}">'
                     f'<img src="{jpeg_data_url(small)}" alt="{name}"></button>')
    return '<div class="ex-strip">' + "".join(items) + "</div>"


EXAMPLE_STRIP_CSS = """
.ex-strip { display: flex; flex-wrap: wrap; gap: 6px; }
.ex-strip .ex { padding: 0; border: 2px solid transparent; border-radius: 8px; cursor: pointer; background: none; }
.ex-strip .ex:hover { border-color: var(--color-accent); }
.ex-strip img { width: 52px; height: 52px; border-radius: 6px; display: block; }
"""
EXAMPLE_STRIP_JS = """
element.querySelectorAll('.ex').forEach(b => b.addEventListener('click', () => trigger('click', {index: Number(b.dataset.index)})));
"""


def example_masks() -> dict[str, str]:
    """Display name -> path of the bundled example masks (index PNGs)."""
    out = {}
    for p in sorted(MASKS_DIR.glob("*.png")):
        if p.stem.endswith("_color"):
            continue
        out[p.stem.replace("_", " ")] = str(p)
    return out


def visitor_error(message: str, where: str) -> gr.Error:
    """The one-line error a visitor sees; the server logs one line (where, and the kind of problem),
    never the visitor's file names or a traceback."""
    log.info("rejected input at %s: %s", where, message.split(":")[0].split("'")[0].strip()[:80])
    return gr.Error(message, print_exception=False)


def face_message(face: PreparedFace | None, what: str, error: str | None = None) -> str:
    if error:
        return f"**Problem:** {error}"
    if face is None:
        return f"Upload a {what}, use the webcam, paste one, or click an example."
    return face.message or "One face found and aligned."


class ExampleFaces:
    """The bundled example photos, prepared once (detect, align, parse, embed) and shared by every
    visitor: a click on an example, or the first visit's pre-filled faces, costs a lookup. Keyed by
    the file's content hash (Gradio hands handlers a copy of the file in its cache). Visitors' own
    photos are never kept here."""

    MAX_BYTES = 8 << 20  # examples are small; a larger file is not hashed at all

    def __init__(self, engine: Engine, paths: list[str]):
        self.engine = engine
        self.by_hash = {self.digest(p): p for p in paths}
        self.prepared: dict[str, PreparedFace] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.warmer: threading.Thread | None = None

    @classmethod
    def for_engine(cls, engine: Engine, paths: list[str]) -> "ExampleFaces":
        """One set per engine (every page built on it shares the prepared examples)."""
        examples = getattr(engine, "_idface_examples", None)
        if examples is None:
            examples = cls(engine, paths)
            engine._idface_examples = examples
        return examples

    def warm_in_background(self) -> None:
        """Prepare them all at start-up, so the first visit does not wait. Not a daemon thread
        (one killed inside torch or dlib at exit aborts the process); stop() ends it early."""
        if self.warmer is None:
            self.warmer = threading.Thread(target=self.warm, name="idface-examples")
            self.warmer.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        self.stopping.set()
        if self.warmer is not None and self.warmer is not threading.current_thread():
            self.warmer.join(timeout=60)

    @staticmethod
    def digest(path: str) -> str:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()

    def warm(self) -> None:
        for digest in list(self.by_hash):
            if self.stopping.is_set():
                return
            try:
                self.get(digest)
            except Exception:  # a broken face model: the visitor's own request will say so
                log.warning("could not prepare a bundled example", exc_info=True)
                return

    def get(self, digest: str) -> PreparedFace:
        with self.lock:
            face = self.prepared.get(digest)
            if face is None:
                face = self.engine.prepare(self.by_hash[digest], "example face")
                self.prepared[digest] = face
            return face

    def contains(self, photo: Any) -> bool:
        """True if `photo` is a path to a bundled example's very bytes."""
        return self.digest_of(photo) in self.by_hash

    def digest_of(self, photo: Any) -> str | None:
        if not isinstance(photo, (str, os.PathLike)):
            return None
        try:
            return None if os.path.getsize(photo) > self.MAX_BYTES else self.digest(photo)
        except OSError:
            return None

    def lookup(self, photo: Any) -> PreparedFace | None:
        """The prepared example if `photo` is a path to a bundled example's bytes, else None."""
        digest = self.digest_of(photo)
        return self.get(digest) if digest in self.by_hash else None


SCORING_NOTE = "Scoring the new face with the recognizers…"
# Intra-op torch threads of a new face's two steps (face_changed, finish_generation), in the calling
# worker thread only. scripts/bench_upload.py on the shared 2-core machine (AMD EPYC, load 5-8),
# median upload to first image per run, 12-18 uploads each: one thread 1.27, 1.17, 1.23, 1.03 s
# (server CPU 0.74-0.86 s), torch's two 1.53, 1.63, 1.17, 1.45 s (0.76-0.99 s); the last four
# alternated. Strokes keep torch's setting (engine.ENGINE_THREADS): there two threads were not
# worse (scripts/bench_stroke.py: 0.77 and 0.89 s on two, 0.97 and 1.05 s on one).
NEW_FACE_THREADS = 1
RECENT_FACE_S = 20.0  # how long a session's just-prepared upload answers a repeated change event


class RecentFaces:
    """Gradio 6.31 fires a photo input's change event twice for one upload when the input already
    shows a photo (two triggers ~10 ms apart; the second waits behind the first), so every upload
    was prepared twice: detect, align, parse and three embeddings again before the first image
    (scripts/bench_upload.py). The face just prepared for a session's uploaded file answers the
    repeat: kept in memory only, per (session, upload path, role) -- Gradio's upload folder is
    named by the file's content hash -- and dropped RECENT_FACE_S after it was prepared (the
    session's own state holds it anyway); never logged or written anywhere."""

    def __init__(self, keep_s: float = RECENT_FACE_S):
        self.keep_s = keep_s
        self.faces: dict[tuple[str, str, str], tuple[float, PreparedFace]] = {}
        self.lock = threading.Lock()

    def _drop_old(self, now: float) -> None:
        for key in [k for k, (t, _) in self.faces.items() if now - t > self.keep_s]:
            del self.faces[key]

    def get(self, key: tuple[str, str, str]) -> PreparedFace | None:
        now = time.monotonic()
        with self.lock:
            self._drop_old(now)
            entry = self.faces.get(key)
        return entry[1] if entry else None

    def put(self, key: tuple[str, str, str], face: PreparedFace) -> None:
        now = time.monotonic()
        with self.lock:
            self._drop_old(now)
            self.faces[key] = (now, face)


class Handlers:
    def __init__(self, engine: Engine, warm_examples: bool = False):
        self.engine = engine
        self.examples = ExampleFaces.for_engine(engine, example_faces())  # prepared on first use
        self.recent = RecentFaces()
        if warm_examples:
            self.examples.warm_in_background()

    # ---- faces ----
    def prepare_face(self, photo: Any, what: str, session: str | None = None,
                     embed: bool = True) -> tuple[PreparedFace | None, str, Any]:
        """-> (state, message, aligned crop for display). With the visitor's session id, a repeat of
        the same upload within RECENT_FACE_S returns the face just prepared (see RecentFaces).
        embed=False: no recognizer embeddings yet (the engine adds them when needed)."""
        if photo is None:
            return None, face_message(None, what), None
        key = (session, str(photo), what) if session and isinstance(photo, (str, os.PathLike)) else None
        try:
            face = self.examples.lookup(photo) or (self.recent.get(key) if key else None)
            if face is None:
                face = self.engine.prepare(photo, what, embed=embed)
                if key:
                    self.recent.put(key, face)
        except IdfaceError as err:
            return None, face_message(None, what, str(err)), None
        return face, face_message(face, what), face.aligned

    def face_changed(self, what: str, photo: Any, previous: PreparedFace | None, other: PreparedFace | None,
                     mask_text: str | None, identity_source: str, from_identity: list[str] | None,
                     follow: bool = False, session: str | None = None, on_face=None) -> tuple:
        """A new style or identity face, up to its first generated face in ONE step (one trip
        through the queue and the page): prepare it without recognizer embeddings; for the style
        face, on_face(face) -> (face, *extra outputs) (the fitting panel's note) and, with `follow`,
        its mask into the editor; generate from that mask, unscored. The identity bars, the mask
        picture, the attention map and the download follow in finish_generation, after the
        picture is shown. `other`: the other role's face.
        -> (face, message, crop, editor, example-mask dropdown, generated, bars, status, last
        generation, *extra). The repeated change event of one upload (RecentFaces answered it
        and the state already holds that face) changes nothing: every output is skipped."""
        with thread_local_torch_threads(NEW_FACE_THREADS):
            return self._face_changed(what, photo, previous, other, mask_text, identity_source, from_identity,
                                      follow, session, on_face)

    def _face_changed(self, what, photo, previous, other, mask_text, identity_source, from_identity, follow,
                      session, on_face) -> tuple:
        face, message, crop = self.prepare_face(photo, what, session, embed=False)
        extra: list = []
        if on_face is not None:
            face, *extra = on_face(face)
        if face is not None and previous is not None and previous.aligned is face.aligned:
            return tuple(gr.skip() for _ in range(9 + len(extra)))
        editor, example = gr.update(), gr.update()
        style, identity = (face, other) if what == "style face" else (other, face)
        if what == "style face":
            editor = self.follow_style_face(face, follow)
            if "value" in editor:  # its mask replaced the editor's (and the example mask's name)
                mask_text, example = editor["value"], gr.update(value=None)
        try:
            label_map = decode_label_map(mask_text) if mask_text else None
        except InputError as err:
            return (face, message, crop, editor, example, None, identity_bars_html(None), f"**Problem:** {err}",
                    None, *extra)
        gen, generated, status = self._generate(label_map, style, identity, identity_source, from_identity,
                                                score=False)
        bars = identity_bars_html(None, SCORING_NOTE) if (style or identity) else identity_bars_html(None)
        return (face, message, crop, editor, example, generated, bars, status, gen, *extra)

    # ---- mask sources ----
    def initial_mask(self) -> str | None:
        """What the editor shows before the style face's mask arrives: the first example mask."""
        masks = example_masks()
        return encode_label_map(load_mask(next(iter(masks.values())), size=FRAME_SIZE)) if masks else None

    def mask_from_face(self, face: PreparedFace | None, what: str):
        if face is None:
            raise visitor_error(f"there is no {what} yet: pick one first", "mask from face")
        return gr.update(value=encode_label_map(face.label_map), backdrop=jpeg_data_url(face.aligned))

    def mask_from_file(self, path: str | None):
        if not path:
            return gr.update()
        try:
            lm = load_mask(path, size=FRAME_SIZE)
        except IdfaceError as err:
            raise visitor_error(str(err), "mask upload") from None
        return gr.update(value=encode_label_map(lm))

    def mask_from_example(self, name: str | None):
        masks = example_masks()
        if not name or name not in masks:
            return gr.update()
        return gr.update(value=encode_label_map(load_mask(masks[name], size=FRAME_SIZE)))

    def follow_style_face(self, face: PreparedFace | None, follow: bool):
        """When the style face changes and 'mask follows the style face' is on, load its mask."""
        if face is None or not follow:
            return gr.update()
        return gr.update(value=encode_label_map(face.label_map), backdrop=jpeg_data_url(face.aligned))

    # ---- generation ----
    def regenerate(self, mask_text: str | None, style: PreparedFace | None, identity: PreparedFace | None,
                   identity_source: str, from_identity: list[str] | None, token: str | None):
        """A stroke or a control: generate and score in one step.
        -> generated, mask picture, attention overlay, bars, download, status, last generation."""
        try:
            label_map = decode_label_map(mask_text) if mask_text else None
        except InputError as err:
            return None, None, None, identity_bars_html(None), None, f"**Problem:** {err}", None
        gen, generated, status = self._generate(label_map, style, identity, identity_source, from_identity)
        mask_pic, attention, bars, download, gen = self._finish(label_map, gen, style, identity, token)
        return generated, mask_pic, attention, bars, download, status, gen

    def finish_generation(self, mask_text: str | None, gen: Generation | None, style: PreparedFace | None,
                          identity: PreparedFace | None, token: str | None):
        """After face_changed showed the picture: the recognizers' scores (embedding the new face
        first), the mask picture, the attention map, the download.
        -> mask picture, attention overlay, bars, download, last generation (now scored).
        A generation already scored (by a stroke since, or the repeated change event of one
        upload) is already on the page: every output is skipped."""
        if gen is not None and gen.scores is not None:
            return tuple(gr.skip() for _ in range(5))
        try:
            label_map = decode_label_map(mask_text) if mask_text else None
        except InputError:
            label_map = None  # face_changed has said so in the status line
        with thread_local_torch_threads(NEW_FACE_THREADS):
            return self._finish(label_map, gen, style, identity, token)

    def _generate(self, label_map: np.ndarray | None, style: PreparedFace | None, identity: PreparedFace | None,
                  identity_source: str, from_identity: list[str] | None,
                  score: bool = True) -> tuple[Generation | None, Any, str]:
        """-> (generation or None, the picture shown, status line)."""
        engine = self.engine
        if style is None:
            return None, None, "Pick a style face to generate."
        if label_map is None:
            return None, None, "Paint a mask or load one (from a face, an example or a file)."
        if not engine.generator_ready:
            return None, None, engine.generator_help
        try:
            gen = engine.generate(label_map, style, identity, identity_source, list(from_identity or []), score=score)
        except IdfaceError as err:
            return None, None, f"**Problem:** {err}"
        except Exception:  # a bug, not the visitor's input: keep the page alive, details in the log
            log.exception("generation failed")
            return None, None, "**Problem:** generation failed on the server; the error is in its log."
        status = (f"Generated in {gen.seconds:.2f} s · checkpoint: {engine.checkpoint_label}"
                  f" · weights: {gen.settings.get('weights', 'base checkpoint')}")
        return gen, upscale(gen.image, FRAME_SIZE), status

    def _finish(self, label_map: np.ndarray | None, gen: Generation | None, style: PreparedFace | None,
                identity: PreparedFace | None, token: str | None):
        """-> mask picture, attention overlay, bars, download, the generation (scored)."""
        engine = self.engine
        mask_pic = index_to_color(label_map) if label_map is not None else None
        if gen is None:  # nothing generated: the two faces' reference scores, if any
            bars = identity_bars_html(engine.score_faces(style, identity) if (style or identity) else None)
            return mask_pic, self.attention_picture(None, token), bars, None, None
        if gen.scores is None:  # generated unscored (face_changed)
            gen.scores = engine.score_faces(style, identity, gen.image)
        download = synthetic_png_file(gen.image, engine.checkpoint_label, gen.settings)
        return mask_pic, self.attention_picture(gen, token), identity_bars_html(gen.scores), download, gen

    def attention_picture(self, gen: Generation | None, token: str | None):
        if gen is None or not token or token not in gen.attention:
            return gr.update(value=None, label="Attention map")
        heat = np.asarray(gen.attention[token], dtype=np.float32)
        name = "Identity token" if token == IDENTITY_TOKEN else DISPLAY_NAMES[CLASS_NAMES.index(token)]
        return gr.update(value=attention_overlay(upscale(gen.image, FRAME_SIZE), heat),
                         label=f"{name}: peak {heat.max():.0%}")

    # ---- API: /generate ----
    def api_generate(self, mask_file: Any, style_file: Any, identity_file: Any,
                     identity_source: str = "identity", from_identity: str = ""):
        """Plain files in (mask: index or colour PNG; style/identity: unaligned photos), the
        generated PNG (synthetic metadata) and the scores out."""
        for value, what in ((mask_file, "mask"), (style_file, "style face"), (identity_file, "identity face")):
            if value is None:
                raise visitor_error(f"the {what} file is missing", "/generate")
        try:
            gen, _, _ = generate_from_photos(
                self.engine, _path(mask_file), _path(style_file), _path(identity_file),
                identity_source or "identity", from_identity or "",
            )
        except IdfaceError as err:
            raise visitor_error(str(err), "/generate") from None
        except Exception:  # a bug or a broken model, not the caller's input: one line out, details in the log
            log.exception("generation failed")
            raise gr.Error("generation failed on the server; the error is in its log") from None
        path = synthetic_png_file(gen.image, self.engine.checkpoint_label, gen.settings)
        return path, {"checkpoint": self.engine.checkpoint_label, "settings": gen.settings,
                      "seconds": round(gen.seconds, 3), **gen.scores}


def _path(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "path", value)
