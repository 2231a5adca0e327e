"""`python -m idface fit`: tune a private copy of the generator to one face photo.

    python -m idface fit --style PHOTO --out DIR [--checkpoint BASE] [--steps N] [--max-seconds S] [--json]

DIR becomes an ordinary checkpoint folder (config.json, model.safetensors, README.md saying what it
was fitted to; not the photo): `python -m idface generate --checkpoint DIR ...`, `conceal` and
`eval` load it. Progress with an ETA goes to stderr; the report to stdout (JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from idface.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--style", required=True, help="photo of the face to fit (its look and identity)")
    parser.add_argument("--out", required=True, help="folder to write the fitted checkpoint to")
    parser.add_argument("--checkpoint", default=None,
                        help="base checkpoint folder or Hub repo id (default: found automatically)")
    # the defaults live in idface.fitting.FitConfig (not imported here: it would load torch for --help)
    parser.add_argument("--steps", type=int, default=None, help="generator tuning steps at most (default: FitConfig.steps)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="wall-clock limit for the fit once the face is prepared (default: FitConfig.max_seconds; "
                             "0 = no limit)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def progress_printer(stream=sys.stderr):
    """A callback drawing one updating progress line with the ETA."""
    def show(p) -> None:
        width = 24
        done = int(width * p.fraction)
        eta = "" if p.eta is None else f", about {p.eta:.0f} s left"
        stage = {"preparing": "preparing", "codes": "style codes", "generator": "tuning the generator",
                 "checking": "checking", "done": "done"}.get(p.stage, p.stage)
        steps = f" {p.step}/{p.total}" if p.stage in ("codes", "generator") else ""
        stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {100 * p.fraction:3.0f}% {stage}{steps}"
                     f" ({p.elapsed:.0f} s{eta})\033[K")
        if p.stage == "done":
            stream.write("\n")
        stream.flush()
    return show


def format_text(summary: dict, out: Path) -> str:
    return (
        f"wrote {out} (fitted from {summary['base']}; {summary['code_steps']} code + {summary['steps']} generator "
        f"steps in {summary['seconds']:.1f} s after {summary['prepare_seconds']:.1f} s preparing the "
        f"face, {summary['stopped']})\n"
        f"PSNR inside the face region {summary['psnr_face_before']:.1f} -> {summary['psnr_face_after']:.1f} dB "
        f"(whole image {summary['psnr_before']:.1f} -> {summary['psnr_after']:.1f}) at {summary['image_size']} px\n"
        f"{summary['identity_metric']} of the reconstruction to the photo {summary['identity_before']:.3f} -> "
        f"{summary['identity_after']:.3f} (threshold {summary['identity_threshold']:.3g})\n"
        f"use it: python -m idface generate --checkpoint {out} --style PHOTO ..."
    )


def run(args: argparse.Namespace) -> int:
    from idface.fitting import fit_face

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the fitted checkpoint")
    if args.steps is not None and args.steps < 0:
        raise InputError(f"--steps must be >= 0; got {args.steps}")
    if args.max_seconds is not None and args.max_seconds < 0:
        raise InputError(f"--max-seconds must be >= 0; got {args.max_seconds}")
    result = fit_face(args.style, args.checkpoint, steps=args.steps, max_seconds=args.max_seconds,
                      progress=progress_printer())
    result.save(out)
    summary = dict(result.summary(), out=str(out))
    print(json.dumps(summary, indent=2) if args.json else format_text(summary, out))
    return 0
