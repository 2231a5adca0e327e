"""`python -m idface identity A.jpg B.jpg [--json]`: are these the same person?

For every recognizer available on this machine: the score, the model's own threshold and its
verdict; recognizers that cannot run are listed with the reason. In --json records the score's key
says what it is: "similarity" (cosine; higher = more alike) or "distance" (dlib's Euclidean; lower
= more alike), and "higher_is_more_similar" says which way the threshold works. Exit code 0
when at least one recognizer gave a verdict, 1 on any error (no face, unreadable photo, none
available), with a one-line message. Photos are read, compared and forgotten; nothing is saved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from idface.errors import IdfaceError, UnavailableError
from idface.identity.base import score_kind


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photo_a", help="first photo (JPEG, PNG, WebP, ...)")
    parser.add_argument("photo_b", help="second photo")
    parser.add_argument("--json", action="store_true", help="print one JSON object per recognizer")
    from idface.identity.registry import RECOGNIZER_NAMES

    parser.add_argument("--recognizer", action="append", choices=list(RECOGNIZER_NAMES),
                        help="only this recognizer (repeatable; default: all)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--download", action="store_true",
                        help="fetch missing recognizer weights (Hub mirror, then facexlib's release URL)")


def compare(photo_a, photo_b, names: list[str] | None = None, device: str = "cpu",
            download: bool = False) -> list[dict]:
    """Decode both photos once, then one record per recognizer (unavailable ones with a reason)."""
    from idface.identity.registry import RECOGNIZER_NAMES, get_recognizer, recognizer_status
    from idface.images import load_image

    a = load_image(photo_a, f"photo {_label(photo_a)}")
    b = load_image(photo_b, f"photo {_label(photo_b)}")
    status = recognizer_status()
    records = []
    for name in names or RECOGNIZER_NAMES:
        if status[name] != "available" and not (download and name == "arcface"):
            records.append(_unavailable(name, status[name]))
            continue
        try:
            rec = get_recognizer(name, device)
        except UnavailableError as err:
            records.append(_unavailable(name, str(err)))
            continue
        records.append({"available": True, **rec.compare_photos(a, b)})
    return records


def _unavailable(name: str, reason: str) -> dict:
    return {"recognizer": name, "available": False, "reason": reason, "threshold": None, "same_person": None}


def _label(photo) -> str:
    return Path(photo).name if isinstance(photo, (str, Path)) else "upload"


def format_record(r: dict) -> str:
    if not r["available"]:
        return f"{r['recognizer']}: unavailable ({r['reason']})"
    kind = score_kind(r["higher_is_more_similar"])
    rule = f"same person {'at or above' if r['higher_is_more_similar'] else 'below'} {r['threshold']}"
    verdict = "SAME PERSON" if r["same_person"] else "DIFFERENT PEOPLE"
    return f"{r['recognizer']}: {r['metric']} {kind} {r[kind]:.3f} ({rule}) -> {verdict}"


def run(args: argparse.Namespace) -> int:
    records = compare(args.photo_a, args.photo_b, args.recognizer, args.device, args.download)
    verdicts = [r for r in records if r["available"]]
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        faces = verdicts[0]["faces"] if verdicts else []
        for label, msg in zip((args.photo_a, args.photo_b), faces):
            print(f"{Path(label).name}: {msg}")
        for r in records:
            print(format_record(r))
    if not verdicts:
        raise IdfaceError("no face recognizer is available on this machine: "
                          + "; ".join(f"{r['recognizer']}: {r['reason']}" for r in records))
    return 0


if __name__ == "__main__":  # pragma: no cover
    from idface.cli import main

    sys.exit(main(["identity", *sys.argv[1:]]))
