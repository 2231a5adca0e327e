"""The mask editor: a small canvas that paints class INDICES, so the label map is exact.

gr.ImageEditor paints antialiased colour strokes, and colours at stroke edges blend into other
class colours (see shared/design/ui.md). Here the browser keeps a Uint8Array of class indices;
a brush stamp writes class k into every pixel of a disc (no blending), the screen is redrawn from
the indices with the official palette, and the server receives the indices run-length encoded
(idface.ui.maskcodec). Painting class k therefore yields class k and nothing else.

Tools: class picker (the legend: colour swatch + readable name), brush size, eraser (paints
Background: "no face part here"; pick Skin to fill skin), undo (Ctrl+Z too), clear (all
background) and reset (back to the mask that was loaded last). The class under the cursor is
named below the canvas, and a faint picture of the face the mask came from can be shown under it.

Value (both directions): the maskcodec text "H,W|k,n,...". The server sets it to load a mask;
every finished stroke sets it and fires the component's `input` event.
"""

from __future__ import annotations

import html

import gradio as gr

from idface.labels import DISPLAY_NAMES, NUM_CLASSES, PALETTE

# Picker order: the classes people paint most first, then the rest as they are numbered.
PICKER_ORDER = (1, 13, 2, 4, 5, 6, 7, 11, 12, 10, 8, 9, 17, 18, 3, 14, 15, 16, 0)
DEFAULT_CLASS = 13  # hair
DEFAULT_RADIUS = 6


def _picker_html() -> str:
    buttons = []
    for k in PICKER_ORDER:
        r, g, b = (int(v) for v in PALETTE[k])
        active = " active" if k == DEFAULT_CLASS else ""
        buttons.append(
            f'<button type="button" class="cls{active}" data-cls="{k}" title="paint {html.escape(DISPLAY_NAMES[k])}">'
            f'<span class="sw" style="background: rgb({r},{g},{b})"></span>{html.escape(DISPLAY_NAMES[k])}</button>'
        )
    return "".join(buttons)


HTML_TEMPLATE = (
    '<div class="mask-editor">'
    '<div class="picker" role="radiogroup" aria-label="class to paint">' + _picker_html() + "</div>"
    '<div class="tools">'
    '<label class="size">Brush <input type="range" class="brush" min="1" max="40" value="'
    + str(DEFAULT_RADIUS) + '"><span class="brush-val">' + str(DEFAULT_RADIUS) + "</span></label>"
    '<button type="button" class="tool eraser" title="paint Background">Eraser</button>'
    '<button type="button" class="tool undo" title="undo the last stroke (Ctrl+Z)">Undo</button>'
    '<button type="button" class="tool reset" title="back to the mask loaded last">Reset</button>'
    '<button type="button" class="tool clear" title="make everything Background">Clear</button>'
    '<label class="ghost-l" title="show the face the mask came from under it">'
    '<input type="checkbox" class="ghost" checked> face under mask</label>'
    "</div>"
    '<div class="stage"><img class="backdrop" alt=""><canvas class="mask-canvas" width="256" height="256"></canvas></div>'
    '<div class="status"><span class="painting">Painting: <b class="cur-name">'
    + html.escape(DISPLAY_NAMES[DEFAULT_CLASS]) + '</b></span><span class="hover"></span></div>'
    "</div>"
)

CSS_TEMPLATE = """
.mask-editor { display: flex; flex-direction: column; gap: 8px; }
.picker { display: flex; flex-wrap: wrap; gap: 4px; }
.picker .cls { display: inline-flex; align-items: center; gap: 5px; padding: 3px 8px 3px 4px;
  border: 1px solid var(--border-color-primary); border-radius: 999px; cursor: pointer;
  background: var(--background-fill-primary); color: var(--body-text-color); font-size: 13px; }
.picker .cls.active { outline: 2px solid var(--color-accent); border-color: var(--color-accent);
  font-weight: 600; }
.picker .sw { width: 16px; height: 16px; border-radius: 50%; border: 1px solid #8886; display: inline-block; }
.tools { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; font-size: 13px; }
.tools .size { display: inline-flex; align-items: center; gap: 6px; }
.tools .tool { padding: 3px 10px; border: 1px solid var(--border-color-primary); border-radius: 6px;
  background: var(--background-fill-secondary); cursor: pointer; color: var(--body-text-color); }
.tools .tool.on { outline: 2px solid var(--color-accent); }
.tools .ghost-l { display: inline-flex; align-items: center; gap: 4px; margin-left: auto; }
.tools input[type=checkbox] { appearance: auto; -webkit-appearance: checkbox; width: 14px; height: 14px; accent-color: var(--color-accent); }
.tools input[type=range] { accent-color: var(--color-accent); }
.stage { position: relative; width: 100%; max-width: 420px; aspect-ratio: 1 / 1; margin: 0 auto;
  border-radius: 8px; overflow: hidden; border: 1px solid var(--border-color-primary); }
.stage canvas, .stage img { position: absolute; inset: 0; width: 100%; height: 100%; }
.stage canvas { image-rendering: pixelated; cursor: crosshair; touch-action: none; }
.stage img.backdrop { object-fit: cover; }
.stage img.backdrop[src=""], .stage img.backdrop:not([src]) { display: none; }
.status { display: flex; justify-content: space-between; font-size: 13px; min-height: 18px; }
"""

JS_ON_LOAD = r"""
const names = props.names, palette = props.palette;
const canvas = element.querySelector('canvas.mask-canvas');
const ctx = canvas.getContext('2d');
const backdrop = element.querySelector('img.backdrop');
let W = 256, H = 256;
let labels = new Uint8Array(W * H), start = labels.slice();
let image = ctx.createImageData(W, H);
let cls = props.default_class, radius = props.default_radius, erasing = false;
const undo = [];
let drawing = false, last = null, before = null;

function resize(h, w) {
  H = h; W = w; canvas.width = w; canvas.height = h;
  image = ctx.createImageData(w, h);
}
function redraw() {
  const d = image.data, alpha = (backdrop.getAttribute('src') && element.querySelector('.ghost').checked) ? 150 : 255;
  for (let i = 0; i < labels.length; i++) {
    const c = palette[labels[i]];
    d[4 * i] = c[0]; d[4 * i + 1] = c[1]; d[4 * i + 2] = c[2]; d[4 * i + 3] = alpha;
  }
  ctx.putImageData(image, 0, 0);
}
function stamp(cx, cy, r, k) {
  const r2 = r * r;
  for (let y = Math.max(0, cy - r); y <= Math.min(H - 1, cy + r); y++)
    for (let x = Math.max(0, cx - r); x <= Math.min(W - 1, cx + r); x++)
      if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r2) labels[y * W + x] = k;
}
function segment(a, b, r, k) {
  const n = Math.max(1, Math.ceil(Math.hypot(b[0] - a[0], b[1] - a[1]) / Math.max(1, r / 2)));
  for (let i = 0; i <= n; i++)
    stamp(Math.round(a[0] + (b[0] - a[0]) * i / n), Math.round(a[1] + (b[1] - a[1]) * i / n), r, k);
}
function encode() {
  const out = [];
  let prev = labels[0], n = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === prev) { n++; } else { out.push(prev, n); prev = labels[i]; n = 1; }
  }
  out.push(prev, n);
  return H + ',' + W + '|' + out.join(',');
}
function decode(text) {
  if (!text || text.indexOf('|') < 0) return false;
  const [head, body] = text.split('|');
  const [h, w] = head.split(',').map(Number);
  const runs = body.split(',').map(Number);
  if (h !== H || w !== W) resize(h, w);
  const next = new Uint8Array(h * w);
  let p = 0;
  for (let i = 0; i + 1 < runs.length; i += 2) { next.fill(runs[i], p, p + runs[i + 1]); p += runs[i + 1]; }
  labels = next;
  return true;
}
function commit() {
  props.value = encode();
  trigger('input');
}
function point(e) {
  const r = canvas.getBoundingClientRect();
  return [Math.floor((e.clientX - r.left) / r.width * W), Math.floor((e.clientY - r.top) / r.height * H)];
}
function brushClass() { return erasing ? 0 : cls; }
function setTool(k, erase) {
  erasing = erase;
  if (!erase) cls = k;
  element.querySelectorAll('.cls').forEach(b => b.classList.toggle('active', !erase && Number(b.dataset.cls) === cls));
  element.querySelector('.eraser').classList.toggle('on', erase);
  element.querySelector('.cur-name').textContent = erase ? 'Eraser (Background)' : names[cls];
}
function doUndo() {
  if (!undo.length) return;
  labels = undo.pop(); redraw(); commit();
}
canvas.addEventListener('pointerdown', e => {
  e.preventDefault();
  canvas.setPointerCapture(e.pointerId);
  drawing = true; before = labels.slice(); last = point(e);
  stamp(last[0], last[1], radius, brushClass()); redraw();
});
canvas.addEventListener('pointermove', e => {
  const p = point(e);
  if (drawing) { segment(last, p, radius, brushClass()); last = p; redraw(); }
  if (p[0] >= 0 && p[0] < W && p[1] >= 0 && p[1] < H)
    element.querySelector('.hover').textContent = 'under cursor: ' + names[labels[p[1] * W + p[0]]];
});
function finish() {
  if (!drawing) return;
  drawing = false;
  let changed = false;
  for (let i = 0; i < labels.length; i++) if (labels[i] !== before[i]) { changed = true; break; }
  if (changed) { undo.push(before); if (undo.length > 40) undo.shift(); commit(); }
  before = null;
}
canvas.addEventListener('pointerup', finish);
canvas.addEventListener('pointercancel', finish);
canvas.addEventListener('pointerleave', () => { element.querySelector('.hover').textContent = ''; });
element.querySelectorAll('.cls').forEach(b => b.addEventListener('click', () => setTool(Number(b.dataset.cls), false)));
element.querySelector('.eraser').addEventListener('click', () => setTool(cls, !erasing));
element.querySelector('.undo').addEventListener('click', doUndo);
element.querySelector('.reset').addEventListener('click', () => { undo.push(labels.slice()); labels = start.slice(); redraw(); commit(); });
element.querySelector('.clear').addEventListener('click', () => { undo.push(labels.slice()); labels = new Uint8Array(W * H); redraw(); commit(); });
element.querySelector('.ghost').addEventListener('change', redraw);
const slider = element.querySelector('.brush');
slider.addEventListener('input', () => { radius = Number(slider.value); element.querySelector('.brush-val').textContent = slider.value; });
element.addEventListener('keydown', e => { if ((e.ctrlKey || e.metaKey) && e.key === 'z') { e.preventDefault(); doUndo(); } });
element.tabIndex = 0;
function load() {
  if (decode(props.value)) { start = labels.slice(); redraw(); }
}
watch('value', () => { if (labels.length) undo.push(labels.slice()); load(); });
watch('backdrop', () => { if (props.backdrop) backdrop.setAttribute('src', props.backdrop); else backdrop.removeAttribute('src'); redraw(); });
if (props.backdrop) backdrop.setAttribute('src', props.backdrop);
load();
redraw();
// for tests and benchmarks: the exact indices the editor holds
element.maskEditor = { encode: encode, size: () => [H, W] };
"""


def mask_editor(value: str | None = None, **kwargs) -> gr.HTML:
    """The mask editor component. value: maskcodec text; `backdrop` prop: data URL of the face."""
    return gr.HTML(
        value=value,
        html_template=HTML_TEMPLATE,
        css_template=CSS_TEMPLATE,
        js_on_load=JS_ON_LOAD,
        apply_default_css=False,
        names=list(DISPLAY_NAMES),
        palette=[[int(c) for c in row] for row in PALETTE[:NUM_CLASSES]],
        default_class=DEFAULT_CLASS,
        default_radius=DEFAULT_RADIUS,
        backdrop="",
        **kwargs,
    )
