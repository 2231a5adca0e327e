"""Identity bars: per recognizer, how similar the generated face is to the style face and to the
identity face, against that recognizer's own same-person threshold, with the verdict in words.

Input is the scores dict made by idface.engine (also printed by the CLI as JSON):
    {"recognizers": {name: {...}}, "unavailable": {name: reason}}
A recognizer's score is a similarity (cosine, higher = more alike) or a distance (dlib's
Euclidean, lower = more alike); bars always grow to the right as faces get more alike.
"""

from __future__ import annotations

import html

from idface.engine import reference_verdict, verdict
from idface.identity.base import score_kind

STYLE_COLOR = "#e8833a"     # the style face's colour everywhere in the app
IDENTITY_COLOR = "#3a7be8"  # the identity face's colour
REFERENCE_COLOR = "#8a8f98"


def _scale(entry: dict) -> tuple[float, float]:
    """(lo, hi) of the displayed score axis; for distances lo > hi (axis reversed)."""
    if entry["higher_is_more_similar"]:
        return -0.2, 1.0
    return max(1.2, 2 * entry["threshold"]), 0.0


def _position(value: float, lo: float, hi: float) -> float:
    return max(0.0, min(1.0, (value - lo) / (hi - lo))) * 100.0


def bar_row(label: str, value: float | None, entry: dict, color: str) -> str:
    lo, hi = _scale(entry)
    thr = _position(entry["threshold"], lo, hi)
    kind = score_kind(entry["higher_is_more_similar"])
    if value is None:
        fill, text = 0.0, "—"
    else:
        fill, text = _position(value, lo, hi), f"{kind} {value:.3f}"
    return (
        '<div class="idbar-row">'
        f'<div class="idbar-label">{html.escape(label)}</div>'
        '<div class="idbar-track">'
        f'<div class="idbar-same" style="left:{thr:.1f}%"></div>'
        f'<div class="idbar-fill" style="width:{fill:.1f}%;background:{color}"></div>'
        f'<div class="idbar-thr" style="left:{thr:.1f}%" title="same-person threshold"></div>'
        "</div>"
        f'<div class="idbar-value">{text}</div>'
        "</div>"
    )


CSS = """
<style>
.idbars { display: flex; flex-direction: column; gap: 10px; font-size: 13px; container-type: inline-size; }
.idbar-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; }
.idbar-head { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; flex-wrap: wrap; }
.idbar-name { font-weight: 600; }
.idbar-thr-note { color: var(--body-text-color-subdued); font-size: 12px; }
.idbar-verdict { margin: 4px 0 6px; font-weight: 600; }
.idbar-row { display: grid; grid-template-columns: 170px 1fr 100px; align-items: center; gap: 8px; margin: 3px 0; }
.idbar-track { position: relative; height: 14px; border-radius: 7px; background: var(--background-fill-secondary); overflow: hidden; }
.idbar-same { position: absolute; top: 0; bottom: 0; right: 0; background: rgba(60, 180, 90, 0.18); }
.idbar-fill { position: absolute; left: 0; top: 3px; bottom: 3px; border-radius: 4px; }
.idbar-thr { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #222; }
.idbar-label { white-space: nowrap; }
.idbar-value { white-space: nowrap; font-variant-numeric: tabular-nums; color: var(--body-text-color-subdued); }
.idbar-ref .idbar-label { color: var(--body-text-color-subdued); }
.idbar-unavail { color: var(--body-text-color-subdued); font-size: 12px; }
.idbar-legend { color: var(--body-text-color-subdued); font-size: 12px; }
/* narrow panels (phones): the label goes above its bar, so the bar keeps most of the width */
@container (max-width: 480px) {
  .idbar-row { grid-template-columns: 1fr 84px; row-gap: 1px; column-gap: 6px; margin: 5px 0; }
  .idbar-label { grid-column: 1 / -1; white-space: normal; }
}
</style>
"""


def identity_bars_html(scores: dict | None, message: str | None = None) -> str:
    """The whole bars panel as HTML (empty-state text when there is nothing to compare)."""
    parts = [CSS, '<div class="idbars">']
    if message:
        parts.append(f'<div class="idbar-legend">{html.escape(message)}</div>')
    recognizers = (scores or {}).get("recognizers", {})
    for name, entry in recognizers.items():
        kind = "cosine similarity" if entry["higher_is_more_similar"] else "Euclidean distance"
        kind_key = score_kind(entry["higher_is_more_similar"])
        rule = "above" if entry["higher_is_more_similar"] else "below"
        note = f'{kind}; same person {rule} {entry["threshold"]:.3g}'
        source = entry.get("threshold_source") or ""
        parts.append('<div class="idbar-card">')
        parts.append(
            f'<div class="idbar-head"><span class="idbar-name">{html.escape(name)}</span>'
            f'<span class="idbar-thr-note" title="{html.escape(source)}">{html.escape(note)}'
            "</span></div>"
        )
        words = verdict(entry)
        if words:
            parts.append(f'<div class="idbar-verdict">Generated face: {html.escape(words)}</div>')
        to_style, to_identity = entry.get(f"{kind_key}_to_style"), entry.get(f"{kind_key}_to_identity")
        if to_style is not None or to_identity is not None:
            parts.append(bar_row("generated vs style face", to_style, entry, STYLE_COLOR))
            parts.append(bar_row("generated vs identity face", to_identity, entry, IDENTITY_COLOR))
        if entry.get("style_vs_identity") is not None:
            parts.append('<div class="idbar-ref">')
            parts.append(bar_row("style vs identity (reference)", entry["style_vs_identity"], entry, REFERENCE_COLOR))
            parts.append("</div>")
            ref = reference_verdict(entry)
            if ref:
                parts.append(f'<div class="idbar-legend">Reference: {html.escape(ref)}.</div>')
        parts.append("</div>")
    unavailable = (scores or {}).get("unavailable", {})
    for name, reason in unavailable.items():
        short = reason.split(";")[0].strip()
        parts.append(
            f'<div class="idbar-unavail" title="{html.escape(reason)}">{html.escape(name)}: not available '
            f'here ({html.escape(short)})</div>'
        )
    if recognizers:
        parts.append(
            '<div class="idbar-legend">Bars grow to the right as two faces look more alike to the '
            "recognizer; the black line is its same-person threshold, the green zone beyond it "
            "means &ldquo;same person&rdquo;.</div>"
        )
    parts.append("</div>")
    return "".join(parts)
