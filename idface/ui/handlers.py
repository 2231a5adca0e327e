"""Event handlers of the demo (app.py only wires them to components).

Each handler takes plain values and returns plain values or gr updates, and turns idface errors
into a one-line message for the visitor (never a stack trace). Uploaded photos live only in the
visitor's gr.State (PreparedFace) and Gradio's upload cache, which delete_cache empties; they are
never logged and never written into outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from idface.errors import IdfaceError, InputError
from idface.images import load_mask
from idface.labels import CLASS_NAMES, DISPLAY_NAMES, index_to_color
from idface.ui.bars import identity_bars_html
from idface.ui.engine import FRAME_SIZE, Engine, Generation, PreparedFace, generate_from_photos
from idface.ui.maskcodec import decode_label_map, encode_label_map
from idface.ui.outputs import attention_overlay, jpeg_data_url, synthetic_png_file, upscale

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FACES_DIR = ROOT / "assets" / "faces"
MASKS_DIR = ROOT / "assets" / "masks"


def example_faces() -> list[str]:
    return sorted(str(p) for p in FACES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def example_strip_html(paths: list[str], thumb: int = 72) -> str:
    """A row of small clickable thumbnails (inline JPEGs of the bundled public-domain photos)."""
    from PIL import Image

    from idface.ui.outputs import jpeg_data_url

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


def face_message(face: PreparedFace | None, what: str, error: str | None = None) -> str:
    if error:
        return f"**Problem:** {error}"
    if face is None:
        return f"Upload a {what}, use the webcam, paste one, or click an example."
    return face.message or "One face found and aligned."


class Handlers:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ---- faces ----
    def prepare_face(self, photo: Any, what: str) -> tuple[PreparedFace | None, str, Any]:
        """-> (state, message, aligned crop for display)."""
        if photo is None:
            return None, face_message(None, what), None
        try:
            face = self.engine.prepare(photo, what)
        except IdfaceError as err:
            return None, face_message(None, what, str(err)), None
        return face, face_message(face, what), face.aligned

    # ---- mask sources ----
    def initial_mask(self) -> str | None:
        """What the editor shows before the style face's mask arrives: the first example mask."""
        masks = example_masks()
        return encode_label_map(load_mask(next(iter(masks.values())), size=FRAME_SIZE)) if masks else None

    def mask_from_face(self, face: PreparedFace | None, what: str):
        if face is None:
            raise gr.Error(f"there is no {what} yet: pick one first")
        return gr.update(value=encode_label_map(face.label_map), backdrop=jpeg_data_url(face.aligned))

    def mask_from_file(self, path: str | None):
        if not path:
            return gr.update()
        try:
            lm = load_mask(path, size=FRAME_SIZE)
        except IdfaceError as err:
            raise gr.Error(str(err)) from None
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
        """-> generated, mask picture, attention overlay, bars, download, status, last generation."""
        engine = self.engine
        try:
            label_map = decode_label_map(mask_text) if mask_text else None
        except InputError as err:
            return None, None, None, identity_bars_html(None), None, f"**Problem:** {err}", None
        mask_pic = index_to_color(label_map) if label_map is not None else None
        scores_only = lambda msg: (  # noqa: E731
            None, mask_pic, None,
            identity_bars_html(engine.score_faces(style, identity) if (style or identity) else None),
            None, msg, None,
        )
        if style is None:
            return scores_only("Pick a style face to generate.")
        if label_map is None:
            return scores_only("Paint a mask or load one (from a face, an example or a file).")
        if not engine.generator_ready:
            return scores_only(engine.generator_help)
        try:
            gen = engine.generate(label_map, style, identity, identity_source, list(from_identity or []))
        except IdfaceError as err:
            return scores_only(f"**Problem:** {err}")
        except Exception:  # a bug, not the visitor's input: keep the page alive, details in the log
            log.exception("generation failed")
            return scores_only("**Problem:** generation failed on the server; the error is in its log.")
        shown = upscale(gen.image, FRAME_SIZE)
        download = synthetic_png_file(gen.image, engine.checkpoint_label, gen.settings)
        status = (f"Generated in {gen.seconds:.2f} s · checkpoint: {engine.checkpoint_label}"
                  f" · weights: {gen.settings.get('weights', 'base checkpoint')}")
        return (shown, mask_pic, self.attention_picture(gen, token), identity_bars_html(gen.scores),
                download, status, gen)

    def attention_picture(self, gen: Generation | None, token: str | None):
        if gen is None or not token or token not in gen.attention:
            return gr.update(value=None, label="Attention map")
        heat = np.asarray(gen.attention[token], dtype=np.float32)
        name = "Identity token" if token == "identity" else DISPLAY_NAMES[CLASS_NAMES.index(token)]
        return gr.update(value=attention_overlay(upscale(gen.image, FRAME_SIZE), heat),
                         label=f"{name}: peak {heat.max():.0%}")

    # ---- API: /generate ----
    def api_generate(self, mask_file: Any, style_file: Any, identity_file: Any,
                     identity_source: str = "identity", from_identity: str = ""):
        """Plain files in (mask: index or colour PNG; style/identity: unaligned photos), the
        generated PNG (synthetic metadata) and the scores out."""
        for value, what in ((mask_file, "mask"), (style_file, "style face"), (identity_file, "identity face")):
            if value is None:
                raise gr.Error(f"the {what} file is missing")
        try:
            gen, _, _ = generate_from_photos(
                self.engine, _path(mask_file), _path(style_file), _path(identity_file),
                identity_source or "identity", from_identity or "",
            )
        except IdfaceError as err:
            raise gr.Error(str(err)) from None
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
