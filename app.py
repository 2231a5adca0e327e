"""idface demo: paint a face mask, pick a style face and an identity face, see the generated face
beside them with live identity bars. Layout and wiring only; the logic lives in idface.ui (handlers) and idface.engine (the service).

Run: `make run` (or `python app.py`); port from GRADIO_SERVER_PORT or PORT (default 7860).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from idface.engine import Engine, display_token_names  # noqa: E402
from idface.labels import CLASS_NAMES, DISPLAY_NAMES  # noqa: E402
from idface.ui.bars import IDENTITY_COLOR, STYLE_COLOR, identity_bars_html  # noqa: E402
from idface.ui.canvas import mask_editor  # noqa: E402
from idface.ui.conceal_panel import conceal_tab  # noqa: E402
from idface.ui.photo_input import photo_input  # noqa: E402
from idface.ui.fit_panel import FitPanel  # noqa: E402
from idface.ui.sessions import (  # noqa: E402
    SESSION_TTL_S, AppFolderSweeper, GuardedBlocks, app_folder, claim_app_folder, delete_cache_schedule,
    free_session_on_unload, launch_limits,
)
from idface.ui.handlers import (  # noqa: E402
    EXAMPLE_STRIP_CSS, EXAMPLE_STRIP_JS, Handlers, example_faces, example_masks, example_strip_html,
)

TITLE = "idface · identity-aware face synthesis"
INTRO = (
    "Synthetic faces with an identity you choose, and what face-recognition systems make of them. "
    "Method: Tarollo et al., *Adversarial Identity Injection for Semantic Face Image Synthesis* "
    "(CVPR 2024 Workshops). Photos you upload are used only during your visit and never stored."
)
SYNTH_INTRO = (
    "Pick a **style face** (how each part looks) and an **identity face** (who face recognition should "
    "see), paint the **mask** (where hair, skin, eyes... go), and the generator paints a new, synthetic "
    "face; the bars show who face-recognition systems think it is."
)
# The first screen shows the paper's effect: the style face's look with another person's identity
# token (weights/idface-demo learnt it; its model card has the measurements).
FIRST_STYLE_FACE, FIRST_IDENTITY_FACE = "obama.jpg", "biden.jpg"
FIRST_SCREEN_NOTE = (
    "Loaded first: Barack Obama's mask and look with Joe Biden's identity token. To people it is "
    "still Obama; the recognizer in the bars reads it as Biden: that is **identity injection**."
)
CSS = f"""
.face-style img {{ border: 3px solid {STYLE_COLOR}; border-radius: 6px; }}
.face-identity img {{ border: 3px solid {IDENTITY_COLOR}; border-radius: 6px; }}
.step-title {{ margin-bottom: 0 !important; }}
#status {{ min-height: 1.5em; }}
/* labels sit above their picture (never over it) and wrap instead of being clipped */
.labelled-pic label[data-testid="block-label"] {{
  position: static !important; white-space: normal !important; max-width: 100% !important;
  margin: 0 0 4px 0 !important; border-radius: 6px !important; }}
.labelled-pic label[data-testid="block-label"] > span {{ display: none !important; }}
/* result pictures: side by side while they fit, wrapping below 110 px each, square at any width */
.result-row {{ flex-wrap: wrap !important; gap: 8px !important; }}
.result-row > div {{ flex: 1 1 110px !important; min-width: 110px !important; }}
.result-pic {{ height: auto !important; }}
.result-pic .image-container, .result-pic .image-frame {{ height: auto !important; }}
.result-pic .image-frame img {{ width: 100% !important; height: auto !important; aspect-ratio: 1 / 1;
  object-fit: contain; }}
.ex-title p {{ margin: 0 !important; font-size: 13px; }}
/* nothing may push the page wider than the screen */
html, body, gradio-app {{ max-width: 100vw; overflow-x: hidden; }}
.gradio-container {{ max-width: 100% !important; }}
"""
MAX_QUEUE = int(os.environ.get("IDFACE_MAX_QUEUE", "32"))
CONCURRENCY = int(os.environ.get("IDFACE_CONCURRENCY", "1"))
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="orange")


def example_strip(faces: list[str], elem_id: str) -> gr.HTML:
    return gr.HTML(example_strip_html(faces), css_template=EXAMPLE_STRIP_CSS, js_on_load=EXAMPLE_STRIP_JS,
                   apply_default_css=False, elem_id=elem_id)


def pick_example(evt: gr.EventData):
    """Thumbnail click -> that example photo into the face input."""
    return example_faces()[int(evt.index)]


def synthesis_tab(demo: gr.Blocks, engine: Engine, warm_examples: bool = False) -> None:
    """The main panel: faces | mask | result."""
    h = Handlers(engine, warm_examples=warm_examples)
    faces = example_faces()
    by_name = {Path(f).name: f for f in faces}
    first_style = by_name.get(FIRST_STYLE_FACE, faces[0] if faces else None)
    first_identity = by_name.get(FIRST_IDENTITY_FACE, faces[-1] if len(faces) > 1 else None)
    generated_kw = dict(min_width=110, format="png", interactive=False, buttons=["fullscreen"],
                        elem_classes=["result-pic", "labelled-pic"])

    # per-visitor state; prepared faces (crops, masks, embeddings) expire with the session
    style_state = gr.State(None, time_to_live=SESSION_TTL_S)
    identity_state = gr.State(None, time_to_live=SESSION_TTL_S)
    last_gen = gr.State(None, time_to_live=SESSION_TTL_S)

    gr.Markdown(SYNTH_INTRO)

    with gr.Row(equal_height=False):
        # ---- 1. faces ----
        with gr.Column(scale=3, min_width=260):
            gr.Markdown("### 1 · Faces", elem_classes="step-title")
            style_in = photo_input(
                label="Style face: how each part looks", height=200,
                sources=["upload", "webcam", "clipboard"], value=first_style,
                buttons=[], elem_classes=["face-style", "labelled-pic"], elem_id="style_in",
            )
            style_msg = gr.Markdown(elem_classes="face-msg")
            fit = FitPanel(engine, faces)  # fit the generator to a new style face; says which weights show
            gr.Markdown("Examples (click one):", elem_classes="ex-title")
            style_examples = example_strip(faces, "style_examples")
            identity_in = photo_input(
                label="Identity face: who recognizers should see", height=200,
                sources=["upload", "webcam", "clipboard"], value=first_identity,
                buttons=[], elem_classes=["face-identity", "labelled-pic"], elem_id="identity_in",
            )
            identity_msg = gr.Markdown(elem_classes="face-msg")
            gr.Markdown("Examples (click one):", elem_classes="ex-title")
            identity_examples = example_strip(faces, "identity_examples")

        # ---- 2. mask ----
        with gr.Column(scale=4, min_width=340):
            gr.Markdown("### 2 · Mask", elem_classes="step-title")
            gr.Markdown("Pick a part, then paint on the mask. The face updates after each stroke.")
            editor = mask_editor(value=h.initial_mask(), elem_id="mask_editor")
            with gr.Row():
                from_style = gr.Button("Mask of the style face", size="sm")
                from_identity = gr.Button("Mask of the identity face", size="sm")
            with gr.Row():
                masks = example_masks()
                example_mask = gr.Dropdown(list(masks), label="Example mask", value=None,
                                           scale=2, min_width=140)
                mask_upload = gr.UploadButton("Upload mask PNG", file_types=["image"], size="sm",
                                              scale=1, min_width=120)
            follow = gr.Checkbox(True, label="Load the new style face's mask when the style face changes")

        # ---- 3. result ----
        with gr.Column(scale=5, min_width=380):
            gr.Markdown("### 3 · Result", elem_classes="step-title")
            status = gr.Markdown(elem_id="status")
            with gr.Row(equal_height=True, elem_classes="result-row"):
                style_crop = gr.Image(label="Style face", **{**generated_kw, "elem_classes": [
                    "face-style", *generated_kw["elem_classes"]]})
                identity_crop = gr.Image(label="Identity face", **{**generated_kw, "elem_classes": [
                    "face-identity", *generated_kw["elem_classes"]]})
                generated = gr.Image(label="Generated" if engine.generator_ready else "Generated (no checkpoint)",
                                     elem_id="generated", **generated_kw)
            bars = gr.HTML(identity_bars_html(None), elem_id="identity_bars")
            gr.Markdown(FIRST_SCREEN_NOTE if engine.generator_ready else "", elem_id="first_screen_note")
            with gr.Row(equal_height=True, elem_classes="result-row"):
                mask_pic = gr.Image(label="Mask used", elem_id="mask_used", **generated_kw)
                attention_pic = gr.Image(label="Attention map", **generated_kw)
            token = gr.Dropdown(display_token_names(), value="identity", label="Attention map of token")
            download = gr.DownloadButton("Download PNG (marked synthetic)", value=None, size="sm")

    # ---- controls from the paper ----
    with gr.Accordion("Controls: style source per part, identity token", open=True):
        with gr.Row():
            token_problem = engine.identity_token_problem()
            identity_source = gr.Radio(
                [("Identity face", "identity"), ("Style face", "style"), ("None", "none")],
                value="none" if token_problem else "identity", label="Identity token from",
                info=("The recognition embedding the generator gets as its extra token."
                      + (f" Set to None: {token_problem}." if token_problem else "")),
            )
            class_choices = [(DISPLAY_NAMES[k], CLASS_NAMES[k]) for k in range(1, len(CLASS_NAMES))]
            take_from_identity = gr.CheckboxGroup(
                class_choices, value=[], label="Parts styled like the identity face",
                info="Unticked parts take their look from the style face.", scale=2,
            )

    # ---- wiring ----
    heavy = dict(concurrency_limit=CONCURRENCY, concurrency_id="model")
    gen_inputs = [editor, style_state, identity_state, identity_source, take_from_identity, token]
    gen_outputs = [generated, mask_pic, attention_pic, bars, download, status, last_gen]

    def regenerate_after(event):
        return event.then(h.regenerate, gen_inputs, gen_outputs, show_progress_on=[generated],
                          api_visibility="private", **heavy)

    def mask_replaced(event):
        """A mask from elsewhere (a face, a file) replaced the example: the dropdown says so."""
        return event.then(lambda: gr.update(value=None), None, example_mask, api_visibility="private")

    def session_of(request: gr.Request | None) -> str | None:
        return request.session_hash if request else None

    # A new face up to its first generated face in one step (prepare without embeddings, the
    # fitting note, its mask into the editor, generate unscored), then the identity bars, mask
    # picture, attention map and download in a second: scripts/bench_upload.py. (A photo input
    # fires change twice for one upload: the repeat is a lookup and changes nothing, see RecentFaces.)
    changed_outputs = [editor, example_mask, generated, bars, status, last_gen]

    def finish_after(event):
        return event.then(h.finish_generation, [editor, last_gen, style_state, identity_state, token],
                          [mask_pic, attention_pic, bars, download, last_gen], show_progress_on=[bars],
                          api_visibility="private", **heavy)

    def style_changed(img, previous, identity, mask_text, source, from_identity, follow_mask, fit_store,
                      request: gr.Request):
        return h.face_changed("style face", img, previous, identity, mask_text, source, from_identity,
                              follow_mask, session_of(request), on_face=lambda face: fit.on_style(img, face, fit_store))

    def identity_changed(img, previous, style, mask_text, source, from_identity, request: gr.Request):
        return h.face_changed("identity face", img, previous, style, mask_text, source, from_identity,
                              session=session_of(request))

    finish_after(style_in.change(
        style_changed,
        [style_in, style_state, identity_state, editor, identity_source, take_from_identity, follow, fit.store],
        [style_state, style_msg, style_crop, *changed_outputs, *fit.style_outputs],
        show_progress_on=[style_crop, generated], api_visibility="private", **heavy,
    ))
    fit.wire(style_in, style_state, regenerate_after)
    # first visit: prepare the pre-filled example faces, take the style face's mask, generate
    regenerate_after(
        demo.load(lambda img: h.prepare_face(img, "style face"), style_in, [style_state, style_msg, style_crop],
                  api_visibility="private", **heavy)
        .then(lambda img: h.prepare_face(img, "identity face"), identity_in,
              [identity_state, identity_msg, identity_crop], api_visibility="private", **heavy)
        .then(h.follow_style_face, [style_state, follow], editor, api_visibility="private")
    )
    finish_after(identity_in.change(
        identity_changed, [identity_in, identity_state, style_state, editor, identity_source, take_from_identity],
        [identity_state, identity_msg, identity_crop, *changed_outputs],
        show_progress_on=[identity_crop, generated], api_visibility="private", **heavy,
    ))
    for button, state, what in ((from_style, style_state, "style face"), (from_identity, identity_state, "identity face")):
        picked = button.click(lambda f, w=what: h.mask_from_face(f, w), state, editor, api_visibility="private")
        regenerate_after(picked)
        mask_replaced(picked)
    regenerate_after(example_mask.input(h.mask_from_example, example_mask, editor, api_visibility="private"))
    uploaded_mask = mask_upload.upload(h.mask_from_file, mask_upload, editor, api_visibility="private")
    regenerate_after(uploaded_mask)
    mask_replaced(uploaded_mask)
    gr.on(
        [editor.input, identity_source.change, take_from_identity.change],
        h.regenerate, gen_inputs, gen_outputs, trigger_mode="always_last",
        show_progress_on=[generated], api_visibility="private", **heavy,
    )
    style_examples.click(pick_example, None, style_in, api_visibility="private")
    identity_examples.click(pick_example, None, identity_in, api_visibility="private")
    token.change(h.attention_picture, [last_gen, token], attention_pic, api_visibility="private")

    # ---- API: /generate with plain files (hidden in the page) ----
    with gr.Column(visible=False):
        api_mask = gr.File(label="mask (index or colour PNG)", file_types=["image"])
        api_style = gr.File(label="style face photo", file_types=["image"])
        api_identity = gr.File(label="identity face photo", file_types=["image"])
        api_identity_source = gr.Radio(["identity", "style", "none"], value="identity", label="identity token from")
        api_from_identity = gr.Textbox("", label="parts styled like the identity face (comma-separated class names)")
        api_image = gr.File(label="generated PNG (synthetic metadata)")
        api_scores = gr.JSON(label="scores per recognizer")
        api_button = gr.Button("generate")
    api_button.click(
        h.api_generate,
        [api_mask, api_style, api_identity, api_identity_source, api_from_identity],
        [api_image, api_scores], api_name="generate", **heavy,
    )


def build_demo(engine: Engine | None = None, warm_examples: bool = False) -> gr.Blocks:
    engine = engine or Engine(strict=False)  # checkpoint from IDFACE_CHECKPOINT or weights/ (idface.hub)
    with GuardedBlocks(title="idface", delete_cache=delete_cache_schedule(), analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        if engine.generator_ready:
            gr.Markdown(f"**Checkpoint:** `{engine.checkpoint_label}`", elem_id="checkpoint")
        else:
            gr.Markdown(f"**Checkpoint:** none. {engine.generator_help}", elem_id="checkpoint")
        with gr.Tabs():
            with gr.Tab("Synthesize", id="synthesize"):
                synthesis_tab(demo, engine, warm_examples)
            # More panels go here as tabs, each built by a function in idface/ui/ taking the
            # engine (e.g. the Conceal panel of issue 6: `with gr.Tab("Conceal"): conceal_tab(engine)`).
            with gr.Tab("Conceal", id="conceal"):
                conceal_tab(engine)
    free_session_on_unload(demo)  # a visitor who leaves takes their faces with them
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=MAX_QUEUE)
    return demo


LAUNCH_KWARGS = dict(theme=THEME, css=CSS, footer_links=["api"], **launch_limits())


def main() -> None:
    port = int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT") or 7860)
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    folder = claim_app_folder(app_folder(port))  # every file this run writes; a previous run's go now
    AppFolderSweeper(folder, *delete_cache_schedule()).start()
    # the served app prepares the bundled examples in the background at start-up
    build_demo(warm_examples=True).launch(server_name=host, server_port=port, show_error=True, **LAUNCH_KWARGS)


if __name__ == "__main__":
    main()
