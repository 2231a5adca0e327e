"""`python -m idface generate`: the app's /generate on the command line.

    python -m idface generate --mask MASK.png --style STYLE.jpg --identity ID.jpg --out OUT.png \
        [--checkpoint DIR_OR_REPO] [--identity-token identity|style|none] \
        [--from-identity hair,skin] [--json]

Same function as the app's API (idface.engine.generate_from_photos): unaligned photos are
detected, aligned and parsed; the mask (index or colour PNG) is resized to the generator frame.
Prints, per available recognizer, the similarity of the generated face to the style face and to the
identity face with the threshold and the verdicts (as JSON with --json). OUT.png is marked synthetic
in its metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from idface.errors import InputError, WeightsNotFoundError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mask", required=True, help="mask image: index PNG (0..18) or CelebAMask-HQ colour PNG")
    parser.add_argument("--style", required=True, help="photo whose look (per part) the generated face takes")
    parser.add_argument("--identity", required=True, help="photo whose identity goes into the identity token")
    parser.add_argument("--out", required=True, help="where to write the generated PNG")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder or Hub repo id (default: found automatically)")
    parser.add_argument("--identity-token", choices=("identity", "style", "none"), default="identity",
                        help="which face's embedding becomes the identity token (default: identity)")
    parser.add_argument("--from-identity", default="",
                        help="comma-separated parts styled like the identity face, e.g. hair,skin")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def report(gen, checkpoint: str, out: Path) -> dict:
    return {
        "out": str(out),
        "checkpoint": checkpoint,
        "settings": gen.settings,
        "seconds": round(gen.seconds, 3),
        "recognizers": gen.scores["recognizers"],
        "unavailable": gen.scores["unavailable"],
    }


def format_text(rep: dict) -> str:
    from idface.identity.base import score_kind

    lines = [f"wrote {rep['out']} (synthetic; checkpoint {rep['checkpoint']}; {rep['seconds']:.2f} s)"]
    for name, e in rep["recognizers"].items():
        kind = score_kind(e["higher_is_more_similar"])
        lines.append(
            f"{name}: {kind} to style {e[kind + '_to_style']:.3f}, to identity {e[kind + '_to_identity']:.3f} "
            f"(threshold {e['threshold']:.3g}) -> {e['verdict']}"
        )
    for name, reason in rep["unavailable"].items():
        lines.append(f"{name}: unavailable ({reason})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from idface.engine import Engine, generate_from_photos
    from idface.outputs import check_png_out, save_synthetic_png

    out = check_png_out(args.out)
    engine = Engine(checkpoint=args.checkpoint)
    if not engine.generator_ready:
        raise WeightsNotFoundError(engine.generator_error)
    gen, _, _ = generate_from_photos(
        engine, args.mask, args.style, args.identity, args.identity_token, args.from_identity
    )
    save_synthetic_png(gen.image, out, engine.checkpoint_label, gen.settings)
    rep = report(gen, engine.checkpoint_label, out)
    print(json.dumps(rep, indent=2) if args.json else format_text(rep), file=sys.stdout)
    return 0
