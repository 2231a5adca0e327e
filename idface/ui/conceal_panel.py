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
import re
from typing import Any

import numpy as np

from idface.conceal.goals import GOAL_CONDITIONS, plural, verdict_words
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
    "messengers do to shared photos. Impersonation worked when the blue bar crosses the line and the "
    "orange bar no longer does, while the picture still looks like A to people; dodging worked when the "
    "orange bar stays short of the line. "
    "Why it matters: changes too small for people to notice can make a recognizer name the wrong "
    "person, so a recognizer's verdict alone is not proof of who is in a photo, and a privacy "
    "protection only counts if it still holds after the photo has been re-compressed."
)

REGION_CHOICES = [("Whole face (skin, nose, eyes, glasses, brows, lips)", "face"), ("Skin", "skin"), ("Hair", "hair"),
                  ("Nose", "nose"), ("Eyes", "eyes"), ("Eyebrows", "brows"), ("Lips and mouth", "lips"),
                  ("Ears", "ears"), ("Neck", "neck")]
MODE_CHOICES = [("Photo: perturb the photo itself (no generator)", "photo"),
                ("Token: optimise the generator's identity token", "token"),
                ("Swap: put B's identity in the token (one pass)", "swap")]
GOAL_CHOICES = [("Impersonate: recognizers read B", "impersonate"), ("Dodge: recognizers no longer read A", "dodge")]


_SERVER_PATH = re.compile(r"(?<![\w.:/])(?:~|[A-Za-z]:)?[/\\](?:[\w.@+-]+[/\\])+[\w.@+-]*")


def public_text(text: str) -> str:
    """A message fit for a visitor: no server file paths, no list of places that were searched."""
    text = re.split(r";\s*tried\b", str(text), maxsplit=1)[0]
    return _SERVER_PATH.sub("(a file on the server)", text)


def public_report(value: Any) -> Any:
    """The report with every string passed through public_text (the JSON the page shows)."""
    if isinstance(value, dict):
        return {k: public_report(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public_report(v) for v in value]
    return public_text(value) if isinstance(value, str) else value


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
            parts.append(f'<div class="idbar-verdict">{label}: {html.escape(verdict_words(block))}</div>')
            if not block.get("error"):
                parts.append(bar_row("result vs A (your photo)", block.get(f"{key}_to_source"), e, STYLE_COLOR))
                for i, v in enumerate(block.get(f"{key}_to_also", [])):
                    parts.append(bar_row(f"result vs another photo of A ({i + 1})", v, e, STYLE_COLOR))
                if goal == "impersonate" and block.get(f"{key}_to_target") is not None:
                    parts.append(bar_row("result vs B (target)", block.get(f"{key}_to_target"), e, IDENTITY_COLOR))
        before = e.get("unattacked", {})
        if goal == "impersonate" and before.get(f"{key}_to_target") is not None:
            parts.append('<div class="idbar-ref">')
            parts.append(bar_row("before the attack: vs B", before[f"{key}_to_target"], e, REFERENCE_COLOR))
            parts.append("</div>")
        parts.append("</div>")
    for name, reason in report.get("unavailable", {}).items():
        parts.append(f'<div class="idbar-unavail">{html.escape(name)}: not available here '
                     f'({html.escape(public_text(reason))})</div>')
    parts.append("</div>")
    return "".join(parts)


def summary_markdown(report: dict) -> str:
    """One short paragraph: did it work (and which conditions held), how visible, how long."""
    goal = "impersonation" if report["goal"] == "impersonate" else "dodging"
    attacked = ", ".join(report["attacked"])
    raw, rc = report["success"], report["success_after_recompression"]
    if raw and rc:
        verdict = f"**The {goal} worked** against {attacked}, on the result as produced and after re-compression"
    elif raw:
        verdict = (f"**The {goal} worked** against {attacked} on the result as produced, **but not after "
                   f"re-compression**")
    elif rc:
        verdict = (f"**The {goal} did not work** against {attacked} on the result as produced; it does "
                   f"after re-compression")
    else:
        verdict = f"**The {goal} did not work** against {attacked}, neither as produced nor after re-compression"
    verdict += f" ({report['recompression']})."
    held = report.get("conditions_held_by_all_attacked", {})
    missing = [GOAL_CONDITIONS[k] for k, ok in held.get("raw", {}).items() if not ok]
    if missing:
        verdict += " Not reached on the result as produced: " + "; ".join(missing) + "."
    psnr = "no change" if report["psnr"] is None else f"PSNR {report['psnr']:.1f} dB"
    lp = "" if isinstance(report["lpips"], str) else f", LPIPS {report['lpips']:.3f}"
    if report.get("ciede2000_region_mean") is not None:
        lp += (f", colour difference in the changed regions (CIEDE2000) mean {report['ciede2000_region_mean']:.2f}, "
               f"99th percentile {report['ciede2000_region_p99']:.2f}")
    level = report.get("budget_level_used")
    if report.get("invisible_budget_met"):
        lp += " (within the invisible budget it started with)"
    elif level is not None:
        lp += f" (the budget had to grow {level:.1f} times from the invisible one it started with)"
    text = (f"{verdict} Change from the original: {psnr}, SSIM {report['ssim_luma']:.3f}{lp}. "
            f"{plural(report.get('steps', 0), 'step')}, {report['seconds']:.0f} s.")
    if report.get("transfer"):
        words = [f"{n}: {'fooled' if v['success'] else 'not fooled'}" for n, v in report["transfer"].items()]
        text += " Recognizers not attacked: " + "; ".join(words) + "."
    return text


def difference_views(original: np.ndarray | None, result: np.ndarray | None,
                     crop: int = 256) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What changed, made visible: (the change amplified, grey = unchanged, [H, W, 3] uint8;
    a 1:1 crop around the changed pixels, original | result side by side, [c, 2c + 4, 3] uint8)."""
    if original is None or result is None or original.shape != result.shape:
        return None, None
    diff = result.astype(np.float32) - original.astype(np.float32)            # [H, W, 3], -255..255
    top = float(np.percentile(np.abs(diff), 99.9))
    gain = 100.0 / max(top, 1.0)                                              # the largest changes -> +-100
    amplified = np.clip(128 + diff * gain, 0, 255).astype(np.uint8)
    h, w = original.shape[:2]
    ys, xs = np.nonzero(np.any(diff != 0, axis=-1))
    cy, cx = (int(ys.mean()), int(xs.mean())) if len(ys) else (h // 2, w // 2)
    c = min(crop, h, w)
    y0, x0 = min(max(0, cy - c // 2), h - c), min(max(0, cx - c // 2), w - c)
    gap = np.full((c, 4, 3), 255, np.uint8)
    pair = np.concatenate([original[y0:y0 + c, x0:x0 + c], gap, result[y0:y0 + c, x0:x0 + c]], axis=1)
    return amplified, pair


def download_label(mode: str) -> str:
    """Photo mode returns the visitor's photo, altered; the generator modes a synthetic face."""
    return "Download PNG (marked as an altered photo)" if mode == "photo" else "Download PNG (marked synthetic)"


class ConcealHandlers:
    """The panel's event handler (engine: idface.engine.Engine, for the generator pipeline)."""

    def __init__(self, engine: Any = None):
        self.engine = engine

    def available_recognizers(self) -> list[str]:
        from idface.identity.registry import available_recognizers

        return available_recognizers()

    def run(self, photo, target, goal: str, mode: str, regions: list[str] | None, attack: list[str] | None,
            min_psnr: float = 40.0, progress: Any = None):
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
            return (*empty, public_text(err))
        rep = public_report(result.report)
        meta = {k: rep[k] for k in ("goal", "mode", "attacked") if k in rep}
        meta.update({k: rep[k] for k in ("regions", "optimised_class_codes", "budget") if k in rep})
        checkpoint = rep.get("checkpoint", "none (photo mode: perturbed photo)")
        path = synthetic_png_file(result.image, checkpoint, meta, altered=rep["altered_photo"])
        return (result.original, result.image, conceal_bars_html(rep), summary_markdown(rep), rep, path, "")


def conceal_tab(engine: Any = None) -> None:
    """Build the panel inside the current gr.Blocks / gr.Tab context."""
    import gradio as gr

    from idface.conceal.photo import PhotoAttackSettings
    from idface.ui.handlers import example_faces
    from idface.ui.photo_input import photo_input

    h = ConcealHandlers(engine)
    budget = PhotoAttackSettings                # the starting limits and how far they may grow
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
            attack = gr.CheckboxGroup(available, value=available, label="Recognizers to attack", elem_id="conceal_attack",
                                      info="The others available here are scored too (transfer).")
            min_psnr = gr.Slider(30, 50, value=budget.min_psnr, step=1, label="Budget to start with: PSNR at least (dB)",
                                 info="Photo mode starts invisible (this PSNR, and a colour difference in the face of "
                                      f"CIEDE2000 mean at most {budget.max_ciede2000_mean:g}, 99th percentile at most "
                                      f"{budget.max_ciede2000_p99:g}) and lets the change grow, "
                                      f"up to {budget.escalate_to:g} times, only while the goal is not reached. Higher = less visible.")
            go = gr.Button("Conceal", variant="primary")
            status = gr.Markdown(elem_id="conceal_status")
        with gr.Column(scale=5, min_width=380):
            with gr.Row(equal_height=True):
                original = gr.Image(label="Original", elem_id="conceal_original", **pic_kw)
                result = gr.Image(label="Result", elem_id="conceal_result", **pic_kw)
                change = gr.Image(label="Change, amplified (grey = unchanged)", elem_id="conceal_change", **pic_kw)
            loupe = gr.Image(label="Face at 1:1 (original | result)", elem_id="conceal_loupe", height=280,
                             format="png", interactive=False, buttons=["fullscreen"])
            summary = gr.Markdown(elem_id="conceal_summary")
            bars = gr.HTML(conceal_bars_html(None), elem_id="conceal_bars")
            gr.Markdown(EXPLANATION)
            download = gr.DownloadButton(download_label("photo"), value=None, size="sm")
            with gr.Accordion("Full report (JSON)", open=False):
                report = gr.JSON()

    def run(photo_v, target_v, goal_v, mode_v, regions_v, attack_v, psnr_v, progress=gr.Progress()):
        out = list(h.run(photo_v, target_v, goal_v, mode_v, regions_v, attack_v, psnr_v, progress))
        out[5] = gr.DownloadButton(download_label(mode_v), value=out[5])
        return (*out, *difference_views(out[0], out[1]))

    go.click(run, [photo, target, goal, mode, regions, attack, min_psnr],
             [original, result, bars, summary, report, download, status, change, loupe],
             api_name="conceal", concurrency_limit=1, concurrency_id="conceal", show_progress_on=[result])


__all__ = ["conceal_tab", "ConcealHandlers", "conceal_bars_html", "summary_markdown", "difference_views",
           "download_label", "public_text", "EXPLANATION"]
