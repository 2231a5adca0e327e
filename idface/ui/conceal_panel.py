"""The app's Conceal panel: impersonate or dodge face recognition, and see whether it worked.

app.py adds it as a tab:  `with gr.Tab("Conceal", id="conceal"): conceal_tab(engine)`

Logic lives in `ConcealHandlers` (plain values in, plain values out; idface errors become one line
for the visitor), the bars in `conceal_bars_html` (built from idface.ui.bars' rows and colours:
orange = the source face A, blue = the target face B, as in the synthesis panel). The work itself is
idface.conceal.conceal, the same function the CLI runs.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np

from idface.errors import IdfaceError
from idface.identity.base import score_kind
from idface.images import load_image
from idface.ui.bars import CSS as BARS_CSS
from idface.ui.bars import IDENTITY_COLOR, REFERENCE_COLOR, STYLE_COLOR, bar_row

log = logging.getLogger(__name__)

EXPLANATION = (
    "**What the bars mean.** A face recognition system turns a face into a list of numbers and "
    "calls two photos the same person when their numbers are close enough; the black line on each "
    "bar is that cut-off, and a bar reaching the green zone means \u201csame person\u201d. The orange bars "
    "show how close the result is to the person in your photo (A), the blue bars how close it is to "
    "the target person (B). Each recognizer is shown twice: on the file exactly as produced, and "
    "after it was shrunk to half size and saved again as a JPEG, which is what social networks and "
    "messengers do to shared photos. Impersonation worked when the blue bar crosses the line while "
    "the picture still looks like A to people; dodging worked when the orange bar stays short of it. "
    "Why it matters: changes too small for people to notice can make a recognizer name the wrong "
    "person, so a recognizer's verdict alone is not proof of who is in a photo, and a privacy "
    "protection only counts if it still holds after the photo has been re-compressed."
)

REGION_CHOICES = [("Whole face (skin, nose, eyes, brows, lips)", "face"), ("Skin", "skin"), ("Hair", "hair"),
                  ("Nose", "nose"), ("Eyes", "eyes"), ("Eyebrows", "brows"), ("Lips and mouth", "lips"),
                  ("Ears", "ears"), ("Neck", "neck")]
MODE_CHOICES = [("Photo: perturb the photo itself (no generator)", "photo"),
                ("Token: optimise the generator's identity token", "token"),
                ("Swap: put B's identity in the token (one pass)", "swap")]
GOAL_CHOICES = [("Impersonate: recognizers read B", "impersonate"), ("Dodge: recognizers no longer read A", "dodge")]


def _verdict_words(goal: str, block: dict) -> str:
    if block.get("error"):
        return f"no verdict ({block['error']})"
    if goal == "impersonate":
        return "read as B: goal reached" if block.get("success") else "not read as B: goal not reached"
    return "no longer read as A: goal reached" if block.get("success") else "still read as A: goal not reached"


def conceal_bars_html(report: dict | None) -> str:
    """Per recognizer: result vs A and vs B, raw and after re-compression, with the threshold line."""
    parts = [BARS_CSS, '<div class="idbars">']
    if not report:
        parts.append('<div class="idbar-legend">Run an attack to see what face recognizers read.</div></div>')
        return "".join(parts)
    goal = report["goal"]
    for name, e in report["recognizers"].items():
        rule = "above" if e["higher_is_more_similar"] else "below"
        kind = "cosine similarity" if e["higher_is_more_similar"] else "Euclidean distance"
        key = score_kind(e["higher_is_more_similar"])  # distance_to_source / similarity_to_source
        tag = "attacked" if e["attacked"] else "not attacked (transfer)"
        parts.append('<div class="idbar-card">')
        parts.append(
            f'<div class="idbar-head"><span class="idbar-name">{html.escape(name)} &middot; {tag}</span>'
            f'<span class="idbar-thr-note">{kind}; same person {rule} {e["threshold"]:.3g}</span></div>'
        )
        for label, block in (("As produced", e), ("After re-compression", e["recompressed"])):
            parts.append(f'<div class="idbar-verdict">{label}: {html.escape(_verdict_words(goal, block))}</div>')
            if not block.get("error"):
                parts.append(bar_row("result vs A (your photo)", block.get(f"{key}_to_source"), e, STYLE_COLOR))
                if block.get(f"{key}_to_target") is not None:
                    parts.append(bar_row("result vs B (target)", block.get(f"{key}_to_target"), e, IDENTITY_COLOR))
        before = e.get("unattacked", {})
        if before.get(f"{key}_to_target") is not None:
            parts.append('<div class="idbar-ref">')
            parts.append(bar_row("before the attack: vs B", before[f"{key}_to_target"], e, REFERENCE_COLOR))
            parts.append("</div>")
        parts.append("</div>")
    for name, reason in report.get("unavailable", {}).items():
        parts.append(f'<div class="idbar-unavail">{html.escape(name)}: not available here ({html.escape(reason)})</div>')
    parts.append("</div>")
    return "".join(parts)


def summary_markdown(report: dict) -> str:
    """One short paragraph: did it work, how visible is it, how long did it take."""
    goal = "impersonation" if report["goal"] == "impersonate" else "dodging"
    attacked = ", ".join(report["attacked"])
    raw = "worked" if report["success"] else "did not work"
    rc = "still works" if report["success_after_recompression"] else "no longer works"
    psnr = "no change" if report["psnr"] is None else f"PSNR {report['psnr']:.1f} dB"
    lp = "" if isinstance(report["lpips"], str) else f", LPIPS {report['lpips']:.3f}"
    text = (f"**The {goal} {raw}** against {attacked} on the result as produced, and it **{rc}** after "
            f"re-compression ({report['recompression']}). Change from the original: {psnr}, SSIM "
            f"{report['ssim_luma']:.3f}{lp}. {report.get('steps', 0)} steps, {report['seconds']:.0f} s.")
    if report.get("transfer"):
        words = [f"{n}: {'fooled' if v['success'] else 'not fooled'}" for n, v in report["transfer"].items()]
        text += " Recognizers not attacked: " + "; ".join(words) + "."
    return text


class ConcealHandlers:
    """The panel's event handler (engine: idface.engine.Engine, for the generator pipeline)."""

    def __init__(self, engine: Any = None):
        self.engine = engine

    def available_recognizers(self) -> list[str]:
        from idface.identity.registry import available_recognizers

        return available_recognizers()

    def run(self, photo, target, goal: str, mode: str, regions: list[str] | None, attack: list[str] | None,
            min_psnr: float = 30.0, progress: Any = None):
        """-> (original, result, bars html, summary markdown, report dict, download path, status)."""
        from idface.conceal import conceal
        from idface.outputs import synthetic_png_file

        empty = (None, None, conceal_bars_html(None), "", None, None)
        if photo is None:
            return (*empty, "Add your photo (A) first.")
        if goal == "impersonate" and target is None:
            return (*empty, "Impersonation needs a target photo (B).")
        from idface.conceal.generator_modes import TokenAttackSettings
        from idface.conceal.photo import PhotoAttackSettings

        settings = {} if mode == "swap" else {"min_psnr": float(min_psnr)}
        total = PhotoAttackSettings.steps if mode == "photo" else TokenAttackSettings.steps
        pipeline = getattr(self.engine, "pipeline", None) if mode != "photo" else None

        def step(i: int, record: dict) -> None:
            if progress is not None:
                progress((i, total), desc="optimising (stops as soon as the goal holds)")

        try:
            if mode != "photo" and pipeline is None:
                from idface.errors import UnavailableError

                help_text = getattr(self.engine, "generator_help", "no generator checkpoint is loaded")
                raise UnavailableError(f"{mode} mode needs the generator: {help_text}")
            photo_rgb = load_image(photo, "your photo")  # header checks before any decode
            target_rgb = None if target is None else load_image(target, "target photo")
            result = conceal(photo_rgb, target_rgb, goal=goal, mode=mode,
                             regions=regions or None, attack=attack or None, settings=settings or None,
                             pipeline=pipeline, progress=step)
        except IdfaceError as err:
            return (*empty, str(err))
        rep = result.report
        meta = {k: rep[k] for k in ("goal", "mode", "attacked") if k in rep}
        meta.update({k: rep[k] for k in ("regions", "optimised_class_codes", "budget") if k in rep})
        checkpoint = rep.get("checkpoint", "none (photo mode: perturbed photo)")
        path = synthetic_png_file(result.image, checkpoint, meta)
        return (result.original, result.image, conceal_bars_html(rep), summary_markdown(rep), rep, path, "")


def conceal_tab(engine: Any = None) -> None:
    """Build the panel inside the current gr.Blocks / gr.Tab context."""
    import gradio as gr

    from idface.ui.handlers import example_faces
    from idface.ui.photo_input import photo_input

    h = ConcealHandlers(engine)
    faces = example_faces()
    available = h.available_recognizers()
    by_name = {f.rsplit("/", 1)[-1]: f for f in faces}
    generator_ready = bool(getattr(engine, "generator_ready", False))
    pic_kw = dict(height=260, format="png", interactive=False, buttons=["fullscreen"])

    gr.Markdown(
        "Make face recognizers read **someone else** (impersonate) or **no longer read you** (dodge) while the "
        "photo still looks like you, and check whether it survives re-compression."
        + ("" if generator_ready else " Token and swap modes need a generator checkpoint; photo mode works without one.")
    )
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=260):
            photo = photo_input(label="Your photo (A)", height=220, sources=["upload", "webcam", "clipboard"],
                             value=by_name.get("obama.jpg"), buttons=[], elem_id="conceal_photo")
            target = photo_input(label="Target (B): who recognizers should read", height=220,
                              sources=["upload", "webcam", "clipboard"], value=by_name.get("biden.jpg"),
                              buttons=[], elem_id="conceal_target")
        with gr.Column(scale=3, min_width=260):
            goal = gr.Radio(GOAL_CHOICES, value="impersonate", label="Goal")
            mode = gr.Radio(MODE_CHOICES, value="photo", label="Mode")
            regions = gr.CheckboxGroup(REGION_CHOICES, value=["face"], label="Regions that may change",
                                       info="Photo mode: only these pixels change. Token mode: these parts' style "
                                            "codes are optimised with the identity token.")
            attack = gr.CheckboxGroup(available, value=available, label="Recognizers to attack",
                                      info="The others available here are scored too (transfer).")
            min_psnr = gr.Slider(25, 45, value=30, step=1, label="Budget: PSNR at least (dB)",
                                 info="Higher = smaller, less visible changes (harder to succeed).")
            go = gr.Button("Conceal", variant="primary")
            status = gr.Markdown(elem_id="conceal_status")
        with gr.Column(scale=5, min_width=380):
            with gr.Row(equal_height=True):
                original = gr.Image(label="Original", **pic_kw)
                result = gr.Image(label="Result", elem_id="conceal_result", **pic_kw)
            summary = gr.Markdown(elem_id="conceal_summary")
            bars = gr.HTML(conceal_bars_html(None), elem_id="conceal_bars")
            gr.Markdown(EXPLANATION)
            download = gr.DownloadButton("Download PNG (marked synthetic)", value=None, size="sm")
            with gr.Accordion("Full report (JSON)", open=False):
                report = gr.JSON()

    def run(photo_v, target_v, goal_v, mode_v, regions_v, attack_v, psnr_v, progress=gr.Progress()):
        return h.run(photo_v, target_v, goal_v, mode_v, regions_v, attack_v, psnr_v, progress)

    go.click(run, [photo, target, goal, mode, regions, attack, min_psnr],
             [original, result, bars, summary, report, download, status],
             api_name="conceal", concurrency_limit=1, concurrency_id="conceal", show_progress_on=[result])


__all__ = ["conceal_tab", "ConcealHandlers", "conceal_bars_html", "summary_markdown", "EXPLANATION"]
