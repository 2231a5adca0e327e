"""`python -m idface conceal`: impersonation / dodging against face recognition.

    python -m idface conceal --photo A.jpg --target B.jpg --goal impersonate|dodge \
        [--also A2.jpg ...] [--mode photo|token|swap] [--regions skin,hair] [--attack dlib-resnet,arcface] \
        --out O.png [--json] [--min-psnr 40] [--max-ciede2000-mean 1] [--escalate-to 5] [--steps N] [--margin M]

Prints, per recognizer, the similarity (dlib: Euclidean distance) of the result to the source A and
to the target B, which conditions of the goal held (impersonate: reads B and no longer reads A;
dodge: no longer reads A, nor the other photos of A given with --also), raw and after re-compression (JPEG 75 after a half-size resize), and
the distortion (PSNR, SSIM, LPIPS where available) and time. Recognizers that were not attacked
are scored too (transfer). Progress goes to stderr.
Exit code 0 when the goal was reached on the raw output by every attacked recognizer, 3 when not,
1 on errors (one line). O.png is marked in its metadata: an altered photo (photo mode) or a
synthetic face (token and swap modes).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from idface.conceal.goals import plural, verdict_words
from idface.errors import InputError
from idface.identity.base import score_kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--photo", required=True, help="the source face A (the result still looks like A)")
    parser.add_argument("--target", default=None, help="the target face B (impersonation: recognizers should read B)")
    parser.add_argument("--also", action="append", default=None, metavar="PHOTO",
                        help="dodge: another photo of A that recognizers should no longer match either (repeatable)")
    parser.add_argument("--goal", choices=("impersonate", "dodge"), default="impersonate",
                        help="impersonate: recognizers read B; dodge: recognizers no longer read A")
    parser.add_argument("--mode", choices=("photo", "token", "swap"), default="photo",
                        help="photo: perturb the photo itself (no generator); token: optimise the generator's "
                             "identity token; swap: put B's identity in the token (one pass)")
    parser.add_argument("--regions", default=None,
                        help="photo mode: parts that may change (class names or groups face, eyes, brows, lips, "
                             "ears, all; default face); token mode: class codes optimised with the token")
    parser.add_argument("--attack", default=None, help="recognizers to attack, comma-separated (default: all available)")
    parser.add_argument("--out", required=True, help="where to write the result PNG (marked: altered photo or synthetic face)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--checkpoint", default=None, help="generator checkpoint (token / swap modes)")
    parser.add_argument("--min-psnr", type=float, default=None,
                        help="distortion budget: PSNR at least this (dB); photo mode: the budget it starts with (40)")
    parser.add_argument("--max-ciede2000-mean", type=float, default=None,
                        help="photo mode: colour difference (CIEDE2000) in the face, mean at most this to start with (1.0)")
    parser.add_argument("--max-ciede2000-p99", type=float, default=None,
                        help="photo mode: colour difference (CIEDE2000) in the face, 99th percentile at most this "
                             "to start with (3.0)")
    parser.add_argument("--escalate-to", type=float, default=None,
                        help="photo mode: while the goal is not reached, the budget may grow up to this many times "
                             "(default 5; 1 = the budget is hard)")
    parser.add_argument("--min-ssim", type=float, default=None, help="distortion budget: SSIM at least this")
    parser.add_argument("--max-change", type=float, default=None, help="photo mode: largest change of a pixel (of 255)")
    parser.add_argument("--steps", type=int, default=None, help="at most this many optimisation steps")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop optimising after this long")
    parser.add_argument("--margin", type=float, default=None,
                        help="how far past each threshold to go before stopping (recognizer units)")
    parser.add_argument("--no-robust", action="store_true",
                        help="stop when the raw result works, without also requiring it after re-compression")
    parser.add_argument("--seed", type=int, default=None)


def settings_from_args(args: argparse.Namespace) -> dict:
    s = {}
    for key, attr in (("min_psnr", "min_psnr"), ("min_ssim", "min_ssim"), ("max_change", "max_change"),
                      ("steps", "steps"), ("max_seconds", "max_seconds"), ("margin", "margin"), ("seed", "seed"),
                      ("max_ciede2000_mean", "max_ciede2000_mean"), ("max_ciede2000_p99", "max_ciede2000_p99"),
                      ("escalate_to", "escalate_to")):
        value = getattr(args, attr, None)
        if value is not None:
            s[key] = value
    for key in ("max_change", "max_ciede2000_mean", "max_ciede2000_p99", "escalate_to"):
        if args.mode != "photo" and key in s:
            raise InputError(f"--{key.replace('_', '-')} applies to photo mode only")
    if args.mode == "swap" and s:
        raise InputError("swap mode is one generator pass; it takes no budget or step settings")
    if getattr(args, "no_robust", False):
        s["robust"] = False
    return s


def format_text(rep: dict, out: Path) -> str:
    marked = "marked as an altered photo" if rep.get("altered_photo") else "marked synthetic"
    lines = [f"wrote {out} ({marked}) - {rep['goal']}, {rep['mode']} mode, {rep['seconds']:.1f} s, "
             f"{plural(rep.get('steps', 0), 'step')} ({rep.get('stopped', '')})"]
    psnr = "identical" if rep["psnr"] is None else f"{rep['psnr']:.2f} dB"
    lp = rep["lpips"] if isinstance(rep["lpips"], str) else f"{rep['lpips']:.4f}"
    lines.append(f"distortion vs unattacked: PSNR {psnr}, SSIM (luma) {rep['ssim_luma']:.4f}, LPIPS {lp}")
    if rep.get("ciede2000_region_mean") is not None:
        grown = ("within the budget it started with" if rep.get("invisible_budget_met")
                 else f"the budget grew {rep.get('budget_level_used', 0):.2f}x from the one it started with")
        lines.append(f"colour difference in the face (CIEDE2000): mean {rep['ciede2000_region_mean']:.2f}, "
                     f"99th percentile {rep['ciede2000_region_p99']:.2f} ({grown})")
    for name, e in rep["recognizers"].items():
        kind = score_kind(e["higher_is_more_similar"])
        tag = "attacked" if e["attacked"] else "not attacked (transfer)"

        def words(v: dict) -> str:
            if v.get("error"):
                return verdict_words(v)
            tgt = "" if v.get(f"{kind}_to_target") is None else f", to B {v[kind + '_to_target']:.3f}"
            also = "".join(f", to other A {x:.3f}" for x in v.get(f"{kind}_to_also", []))
            return f"{kind} to A {v[kind + '_to_source']:.3f}{tgt}{also} -> {verdict_words(v)}"

        lines.append(f"{name} [{tag}, same person {'above' if e['higher_is_more_similar'] else 'below'} {e['threshold']:.3g}]")
        lines.append(f"  raw:          {words(e)}")
        lines.append(f"  recompressed: {words(e['recompressed'])}")
    for name, reason in rep["unavailable"].items():
        lines.append(f"{name}: unavailable ({reason})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from idface.conceal.api import conceal, mode_settings
    from idface.outputs import check_png_out, save_synthetic_png

    out = check_png_out(args.out)
    settings = mode_settings(args.mode, settings_from_args(args))
    total = None if args.mode == "swap" else settings.steps
    bar = tqdm(total=total, desc=f"conceal ({args.mode})", unit="step", file=sys.stderr,
               disable=None, leave=False)

    def progress(step: int, record: dict) -> None:
        bar.update(1)
        bar.set_postfix(worst_margin=record.get("worst_margin"))

    try:
        result = conceal(args.photo, args.target, goal=args.goal, mode=args.mode, regions=args.regions,
                         attack=args.attack, settings=settings, checkpoint=args.checkpoint, progress=progress,
                         also=args.also)
    finally:
        bar.close()
    rep = result.report
    meta = {k: rep[k] for k in ("goal", "mode", "attacked") if k in rep}
    meta.update({k: rep[k] for k in ("regions", "optimised_class_codes", "budget") if k in rep})
    save_synthetic_png(result.image, out, rep.get("checkpoint", "none (photo mode: perturbed photo)"), meta,
                       altered=rep["altered_photo"])
    rep = {"out": str(out), **rep}
    print(json.dumps(rep, indent=2) if args.json else format_text(rep, out))
    return 0 if rep["success"] else 3
