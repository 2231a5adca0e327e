"""Every recognizer's score on every pair of the six bundled photos (3 same-person pairs, 12
different-person pairs), its verdict under its own rule, and the margin between the least similar
same-person pair and the most similar different-person pair.

Also scores the candidates that are NOT offered (idface.identity.registry.NOT_OFFERED) and
faceres with the Human library's input (plain RGB 0..255) instead of the original's, which is the
evidence for those choices.

    python scripts/recognizer_pairs.py [--json out.json]

Six photos of four people say nothing about unseen faces: these numbers only show that a model's
rule does not contradict the labelled pairs at hand.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = {"obama": "obama.jpg", "obama2": "obama2.jpg", "obama3": "obama3.jpg", "biden": "biden.jpg",
          "astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg"}


def person(photo: str) -> str:
    return "obama" if photo.startswith("obama") else photo


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def pair_table(embeddings: dict, score, same_rule) -> dict:
    """{pairs: [{a, b, same_person_truth, score, verdict_same}], margin, wrong}."""
    rows, same, diff = [], [], []
    for a, b in itertools.combinations(PHOTOS, 2):
        s = float(score(embeddings[a], embeddings[b]))
        truth = person(a) == person(b)
        rows.append({"a": a, "b": b, "same_person": truth, "score": round(s, 4),
                     "verdict_same": None if same_rule is None else bool(same_rule(s))})
        (same if truth else diff).append(s)
    out = {"pairs": rows, "same_range": [round(min(same), 4), round(max(same), 4)],
           "different_range": [round(min(diff), 4), round(max(diff), 4)]}
    if same_rule is not None:
        out["wrong_verdicts"] = sum(r["verdict_same"] != r["same_person"] for r in rows)
    return out


def registry_recognizers() -> dict:
    from idface.identity.registry import available_recognizers, get_recognizer

    results = {}
    for name in available_recognizers():
        rec = get_recognizer(name)
        emb = {k: rec.embed_photo(ROOT / "assets" / "faces" / v)[0] for k, v in PHOTOS.items()}
        table = pair_table(emb, rec.score, rec.is_same)
        hi = rec.higher_is_more_similar
        table["margin"] = round((table["same_range"][0] - table["different_range"][1]) if hi
                                else (table["different_range"][0] - table["same_range"][1]), 4)
        table.update({"offered": True, "metric": rec.metric, "threshold": rec.threshold,
                      "higher_is_more_similar": hi, "threshold_source": rec.threshold_source})
        results[name] = table
    return results


def candidates() -> dict:
    """Networks (or inputs) tried and not offered, scored with cosine similarity."""
    from idface.faces import locate_face
    from idface.faces.align import align_face
    from idface.identity.hse_faceres import OUTPUT_NODE
    from idface.tfjs import load_graph_model

    chips = {}
    for k, v in PHOTOS.items():
        rgb, det = locate_face(ROOT / "assets" / "faces" / v)
        face = det.chosen
        chips[k] = {t: torch.from_numpy(align_face(rgb, face.landmarks, t, s, dlib5=face.dlib5)[0]).float()[None]
                    for t, s in (("arcface", 112), ("dlib", 224))}  # [1, S, S, 3] 0..255 RGB

    def run(net, x, node=None):
        with torch.no_grad():
            out = net(x, outputs=[node] if node else None)
        return next(iter(out.values()))[0].numpy()

    faceres, mobileface, mobilefacenet = (load_graph_model(n) for n in ("faceres", "mobileface", "mobilefacenet"))
    inputs = {
        "faceres, Human's input (RGB 0..255)": lambda c: run(faceres, c["dlib"], OUTPUT_NODE),
        # MobileFace's own LFW protocol: InsightFace 112 crop, RGB (the graph subtracts 127.5 and
        # scales by 1/128 itself), L2-normalised, plus the flipped face
        "mobileface (ArcFace crop, RGB, + flipped)": lambda c: sum(
            (lambda e: e / np.linalg.norm(e))(run(mobileface, x)) for x in (c["arcface"], c["arcface"].flip(2))),
        "mobilefacenet (ArcFace crop, (x - 127.5) / 128)": lambda c: run(mobilefacenet, (c["arcface"] - 127.5) / 128),
        "mobilefacenet (ArcFace crop, 0..255)": lambda c: run(mobilefacenet, c["arcface"]),
    }
    results = {}
    for label, embed in inputs.items():
        table = pair_table({k: embed(c) for k, c in chips.items()}, cosine, None)
        table.update({"offered": False, "metric": "cosine", "higher_is_more_similar": True,
                      "margin": round(table["same_range"][0] - table["different_range"][1], 4)})
        results[label] = table
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write every score to this JSON file")
    args = parser.parse_args()
    results = {**registry_recognizers(), **candidates()}
    for name, r in results.items():
        rule = (f"rule {'>=' if r['higher_is_more_similar'] else '<'} {r['threshold']}, "
                f"{r['wrong_verdicts']} wrong of 15" if r["offered"] else "not offered")
        print(f"{name}: {r['metric']} same {r['same_range'][0]:.3f}..{r['same_range'][1]:.3f}, "
              f"different {r['different_range'][0]:.3f}..{r['different_range'][1]:.3f}, "
              f"margin {r['margin']:+.3f} ({rule})")
        for p in r["pairs"]:
            mark = "" if p["verdict_same"] is None or p["verdict_same"] == p["same_person"] else "  WRONG"
            print(f"    {p['a']:>12} - {p['b']:<12} {'same' if p['same_person'] else 'diff'} {p['score']:8.4f}{mark}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
