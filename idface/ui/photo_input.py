"""The photo inputs of the page (faces, conceal photos): gr.Image that hands the uploaded file's
path to idface, undecoded.

gr.Image(type="numpy") decodes an upload with PIL before any handler runs (up to PIL's own
178-megapixel limit; a 13300x13300 PNG took 18-23 s and 2.3 GB) and shows its own multi-line
error, with server paths, for a file it cannot read. Here the handler gets the path and decodes it
through idface.images.load_image, the same checks (header size and pixel budget before any decode,
modes, EXIF) and the same one-line messages as /generate and the CLI.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


class PhotoInput(gr.Image):
    """gr.Image whose value for handlers is the uploaded file's path (or None); never decoded here.
    Build it with photo_input(...) (gr.Image's own __init__, so the page gets its props)."""

    is_template = True  # the page renders it with gr.Image's front end (as gradio's own templates do)

    def preprocess(self, payload: Any) -> str | None:
        if payload is None:
            return None
        if payload.path and not (payload.url or "").startswith("data:"):
            return str(payload.path)  # Gradio's upload route has already bounded the file's size
        return super().preprocess(payload)  # an inline data: URL, written to a file by Gradio


def photo_input(**kwargs: Any) -> PhotoInput:
    """A photo input (gr.Image keywords) whose handlers get the file path, decoded by idface."""
    kwargs.pop("image_mode", None)
    return PhotoInput(type="filepath", image_mode=None, **kwargs)
