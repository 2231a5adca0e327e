"""`python -m idface fit`: tune a private copy of the generator to one face photo.

    python -m idface fit --style PHOTO --out DIR [--identity PHOTO] [--checkpoint BASE] [--steps N]
                         [--max-seconds S] [--json]

DIR becomes an ordinary checkpoint folder (config.json, model.safetensors, README.md saying what it
was fitted to; not the photo): `python -m idface generate --checkpoint DIR ...`, `conceal` and
`eval` load it. Progress with an ETA goes to stderr; the report to stdout (JSON with --json).
With --identity the fitted copy also practises that face's identity token (idface.fitting.inject,
as `generate` does before the first image with another person) and DIR holds those weights.
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
    parser.add_argument("--identity", default=None,
                        help="photo of another person whose identity token the fitted copy practises (so that "
                             "face recognition reads that person in what it generates with that token)")
    parser.add_argument("--checkpoint", default=None,
                        help="base checkpoint folder or Hub repo id (default: found automatically)")
    # the defaults live in idface.fitting.FitConfig (not imported here: it would load torch for --help)
    parser.add_argument("--steps", type=int, default=None, help="generator tuning steps at most (default: FitConfig.steps)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="wall-clock limit for the fit once the face is prepared (default: FitConfig.max_seconds; "
                             "0 = no limit)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def progress_printer(stream=None):
    """A callback drawing one updating progress line with the ETA (on stderr as it is when called)."""
    def show(p) -> None:
        out = stream or sys.stderr
        width = 24
        done = int(width * p.fraction)
        eta = "" if p.eta is None else f", about {p.eta:.0f} s left"
        stage = {"preparing": "preparing", "codes": "style codes", "generator": "tuning the generator",
                 "checking": "checking", "done": "done"}.get(p.stage, p.stage)
        steps = f" {p.step}/{p.total}" if p.stage in ("codes", "generator") else ""
        out.write(f"\r[{'#' * done}{'.' * (width - done)}] {100 * p.fraction:3.0f}% {stage}{steps}"
                     f" ({p.elapsed:.0f} s{eta})\033[K")
        if p.stage == "done":
            out.write("\n")
        out.flush()
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
    if args.identity is not None and not Path(args.identity).is_file():
        raise InputError(f"--identity {args.identity}: no such file")
    result = fit_face(args.style, args.checkpoint, steps=args.steps, max_seconds=args.max_seconds,
                      progress=progress_printer())
    practice = practise_photo(result, args.style, args.identity) if args.identity else None
    result.save(out)
    summary = dict(result.summary(), out=str(out))
    if practice is not None:
        summary["identity_practice"] = practice
    text = format_text(summary, out)
    if practice is not None:
        text += (f"\npractised the identity face's token: {practice['steps']} steps in {practice['seconds']:.1f} s; "
                 + "; ".join(f"{name} reads it as that person: {'yes' if v['reads_as_identity'] else 'no'}"
                             for name, v in practice["recognizers_practised_against"].items()))
    print(json.dumps(summary, indent=2) if args.json else text)
    return 0


def practise_photo(result, style_photo: str, identity_photo: str) -> dict:
    """Practise the identity photo's token into result.model (in place of it); -> the practice's summary.
    The photos are prepared as the app does; nothing of them is kept."""
    from dataclasses import replace

    from idface.faces import prepare_face
    from idface.fitting.fit import embed
    from idface.fitting.inject import practise_identity
    from idface.identity.registry import available_recognizers, get_recognizer
    from idface.images import load_image

    model = result.model
    name = model.config.identity_recognizer
    style = prepare_face(load_image(style_photo, "style photo"))
    identity = prepare_face(load_image(identity_photo, "identity photo"))
    recognizers = {n: get_recognizer(n) for n in available_recognizers()}
    if name not in recognizers:
        raise InputError(f"--identity needs the checkpoint's recognizer {name}, which is not available here")
    emb = {n: (embed(r, style.image).numpy(), embed(r, identity.image).numpy()) for n, r in recognizers.items()}
    main = recognizers[name]
    if main.is_same(float(main.score(*emb[name]))):
        raise InputError(f"--identity shows the same person as --style ({name}); give another person's photo")
    practice = practise_identity(model, main, style.image, style.label_map, *emb[name],
                                 also={n: (r, *emb[n]) for n, r in recognizers.items() if n != name})
    summary = practice.summary()
    extra = dict(model.config.extra)
    extra["notes"] = extra.get("notes", "") + (
        f" These weights also practised another person's identity token ({summary['steps']} steps, "
        "idface.fitting.inject): they hold that person's recognizer embedding as well; treat them as "
        "biometric data of both people.")
    extra["identity_practice"] = summary
    practice.model.config = replace(model.config, extra=extra)
    practice.model._hub_mixin_config = practice.model.config.to_dict()
    result.model = practice.model
    return summary
