"""Measure the bundled demo checkpoint against its quality bars and draw a contact sheet.

    python scripts/eval_demo.py                       # the checkpoint the resolver picks (bundled)
    python scripts/eval_demo.py --checkpoint runs/demo/final --out /tmp/demo-eval

Bars (issue 7), all at the checkpoint's own resolution:
  - reconstruction of the six training photos (mask, style and identity from the same photo):
    PSNR >= 22 dB on average, and dlib-ResNet calls >= 80% of them the same person as the photo;
  - mask edits (grow the hair, close the mouth, remove the eyebrows): the output changes inside
    the edited region and hardly anywhere else (mean |change| inside vs. outside a small margin);
  - hair swap: the hair of photo B's style code put on photo A moves A's hair colour towards B's
    while the rest of A stays.
Prints one JSON object (and writes it to OUT/eval.json) and saves OUT/contact_sheet.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from idface.fitting.edits import close_mouth, grow_hair, remove_brows  # noqa: E402
from idface.labels import CLASS_INDEX as C, index_to_color  # noqa: E402

TRAIN_DIR = REPO / "assets" / "train"
NAMES = ("astronaut", "grace_hopper", "obama", "obama2", "obama3", "biden")
PERSON = {"astronaut": "Eileen Collins", "grace_hopper": "Grace Hopper", "obama": "Barack Obama",
          "obama2": "Barack Obama", "obama3": "Barack Obama", "biden": "Joe Biden"}
PSNR_BAR_DB = 22.0
SAME_PERSON_BAR = 0.8
EDIT_MARGIN = 6  # pixels (at the model's resolution) around an edit that count as neither inside nor outside
LOCALITY_BAR = 4.0  # mean |change| inside the edit must be this many times the mean |change| outside


# ---- inputs ------------------------------------------------------------------------------------

def load_training_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(aligned RGB [256, 256, 3] uint8, label map [256, 256] uint8) of one training photo."""
    from idface.images import load_image, load_mask

    image = load_image(TRAIN_DIR / f"{name}.png", what=f"training image {name}")
    label = load_mask(TRAIN_DIR / f"{name}_mask.png")
    return image, label


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """The training data's resize (idface.training.data: Lanczos)."""
    if image.shape[0] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def resize_labels(label: np.ndarray, size: int) -> np.ndarray:
    if label.shape[0] == size:
        return label
    return np.asarray(Image.fromarray(label).resize((size, size), Image.Resampling.NEAREST))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None] / 255.0


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) / 255.0 - b.astype(np.float64) / 255.0) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


# ---- mask edits --------------------------------------------------------------------------------

# grow_hair, close_mouth, remove_brows: the same edits the fitting augments with (idface.fitting.edits)


EDITS = {
    "grow hair": ("astronaut", lambda lm: grow_hair(lm, max(2, lm.shape[0] // 16))),
    "close mouth": ("obama", close_mouth),
    "remove brows": ("biden", remove_brows),
}


def locality(before: np.ndarray, after: np.ndarray, changed: np.ndarray, margin: int = EDIT_MARGIN) -> dict:
    """Mean |pixel change| (0..255, mean over RGB) inside the edited region and outside it (beyond
    `margin` pixels), and their ratio."""
    diff = np.abs(after.astype(np.float64) - before.astype(np.float64)).mean(-1)
    k = 2 * margin + 1
    near = cv2.dilate(changed.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    inside = float(diff[changed].mean()) if changed.any() else 0.0
    outside = float(diff[~near].mean())
    return {"changed_pixels": int(changed.sum()), "mean_change_inside": inside,
            "mean_change_outside": outside, "ratio": inside / max(outside, 1e-6),
            "local": bool(changed.any() and inside >= LOCALITY_BAR * max(outside, 0.25))}


# ---- evaluation --------------------------------------------------------------------------------

class DemoEvaluator:
    def __init__(self, pipe, recognizer=None):
        from idface.identity.registry import get_recognizer

        self.pipe = pipe
        self.size = pipe.image_size
        self.recognizer = recognizer or get_recognizer(pipe.config.identity_recognizer, "cpu")
        self.pairs = {n: load_training_pair(n) for n in NAMES}
        self._embeddings: dict[str, np.ndarray] = {}

    def embed(self, image: np.ndarray) -> np.ndarray:
        """Recognizer embedding of an aligned generator-frame image (any size)."""
        with torch.no_grad():
            return self.recognizer.embed_frame(to_tensor(image))[0].float().numpy()

    def photo_embedding(self, name: str) -> np.ndarray:
        """Identity of a training photo: the recognizer on its aligned frame at the model's
        resolution (what the trainer fed the identity token)."""
        if name not in self._embeddings:
            self._embeddings[name] = self.embed(resize_image(self.pairs[name][0], self.size))
        return self._embeddings[name]

    def generate(self, name: str, label: np.ndarray | None = None, class_sources=None) -> np.ndarray:
        image, lm = self.pairs[name]
        result = self.pipe(lm if label is None else label, style=(image, lm),
                           identity_embedding=self.photo_embedding(name), class_sources=class_sources,
                           attention=False)
        return result.image

    def reconstruction(self, name: str) -> dict:
        real = resize_image(self.pairs[name][0], self.size)
        fake = self.generate(name)
        fake_emb = self.embed(fake)
        score = float(self.recognizer.score(fake_emb, self.embed(self.pairs[name][0])))
        # the nearest photo of somebody else: a blurry face can sit under the threshold for
        # everybody, so also say whether the right person is the nearest one
        others = [float(self.recognizer.score(fake_emb, self.embed(self.pairs[o][0])))
                  for o in NAMES if PERSON[o] != PERSON[name]]
        best_other = max(others) if self.recognizer.higher_is_more_similar else min(others)
        nearest_is_right = score > best_other if self.recognizer.higher_is_more_similar else score < best_other
        return {"name": name, "psnr_db": psnr_db(fake, real), "identity_score": score,
                "same_person": bool(self.recognizer.is_same(score)),
                "nearest_other_person_score": best_other, "nearest_is_right_person": bool(nearest_is_right),
                "image": fake, "real": real}

    def mask_edit(self, title: str) -> dict:
        name, edit = EDITS[title]
        lm = resize_labels(self.pairs[name][1], self.size)
        edited = edit(lm)
        before, after = self.generate(name, lm), self.generate(name, edited)
        out = locality(before, after, edited != lm)
        out.update({"edit": title, "photo": name, "before": before, "after": after, "mask": edited})
        return out

    def hair_swap(self, target: str, donor: str) -> dict:
        lm = resize_labels(self.pairs[target][1], self.size)
        before = self.generate(target)
        after = self.generate(target, class_sources={"hair": self.pairs[donor]})
        hair = lm == C["hair"]
        donor_real = resize_image(self.pairs[donor][0], self.size)
        donor_hair = donor_real[resize_labels(self.pairs[donor][1], self.size) == C["hair"]].mean(0)
        dist_before = float(np.linalg.norm(before[hair].mean(0) - donor_hair))
        dist_after = float(np.linalg.norm(after[hair].mean(0) - donor_hair))
        loc = locality(before, after, hair)
        return {"target": target, "donor": donor, "hair_colour_distance_to_donor_before": dist_before,
                "hair_colour_distance_to_donor_after": dist_after,
                "moved_towards_donor": bool(dist_after < 0.7 * dist_before),
                "mean_change_inside": loc["mean_change_inside"], "mean_change_outside": loc["mean_change_outside"],
                "ratio": loc["ratio"], "local": loc["local"],
                "before": before, "after": after, "donor_image": donor_real}


def contact_sheet(recons: list[dict], edits: list[dict], swaps: list[dict], path: Path) -> None:
    s = recons[0]["image"].shape[0]

    def label(tile: np.ndarray, text: str) -> np.ndarray:
        tile = tile.copy()
        cv2.putText(tile, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 2)
        cv2.putText(tile, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1)
        return tile

    def heat(before, after):
        d = np.abs(after.astype(np.float64) - before.astype(np.float64)).mean(-1)
        return cv2.applyColorMap(np.clip(d * 4, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]

    rows = [np.concatenate([label(r["real"], r["name"]) for r in recons], 1),
            np.concatenate([label(r["image"], f"{r['psnr_db']:.1f}dB d={r['identity_score']:.2f}") for r in recons], 1)]
    blank = np.full((s, s, 3), 255, np.uint8)
    for e in edits:
        tiles = [label(e["before"], e["photo"]), label(index_to_color(e["mask"]), e["edit"]),
                 label(e["after"], "edited"), label(heat(e["before"], e["after"]), f"x{e['ratio']:.0f} local")]
        rows.append(np.concatenate(tiles + [blank] * (len(recons) - len(tiles)), 1))
    for w in swaps:
        tiles = [label(w["before"], w["target"]), label(w["donor_image"], f"hair of {w['donor']}"),
                 label(w["after"], "hair swapped"), label(heat(w["before"], w["after"]), "change")]
        rows.append(np.concatenate(tiles + [blank] * (len(recons) - len(tiles)), 1))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def evaluate(pipe, out_dir: Path | None = None) -> dict:
    ev = DemoEvaluator(pipe)
    recons = [ev.reconstruction(n) for n in NAMES]
    edits = [ev.mask_edit(t) for t in EDITS]
    swaps = [ev.hair_swap("astronaut", "obama"), ev.hair_swap("biden", "astronaut")]
    strip = lambda d: {k: v for k, v in d.items() if not isinstance(v, np.ndarray)}  # noqa: E731
    mean_psnr = float(np.mean([r["psnr_db"] for r in recons]))
    same_share = float(np.mean([r["same_person"] for r in recons]))
    nearest_share = float(np.mean([r["nearest_is_right_person"] for r in recons]))
    report = {
        "checkpoint": pipe.source.describe() if pipe.source is not None else None,
        "resolution": ev.size,
        "recognizer": {"name": ev.recognizer.name, "threshold": ev.recognizer.threshold,
                       "higher_is_more_similar": ev.recognizer.higher_is_more_similar},
        "reconstruction": [strip(r) for r in recons],
        "mean_psnr_db": mean_psnr,
        "same_person_share": same_share,
        "nearest_is_right_person_share": nearest_share,
        "mask_edits": [strip(e) for e in edits],
        "hair_swaps": [strip(w) for w in swaps],
        "bars": {
            f"mean PSNR >= {PSNR_BAR_DB} dB": mean_psnr >= PSNR_BAR_DB,
            f"same person >= {SAME_PERSON_BAR:.0%}": same_share >= SAME_PERSON_BAR,
            "mask edits local": all(e["local"] for e in edits),
            "hair swaps move the hair colour": all(w["moved_towards_donor"] for w in swaps),
        },
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        contact_sheet(recons, edits, swaps, out_dir / "contact_sheet.png")
        (out_dir / "eval.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder or Hub id (default: the resolver's choice)")
    ap.add_argument("--out", default=None, help="folder for eval.json and contact_sheet.png (default: print only)")
    args = ap.parse_args(argv)
    from idface.pipeline import IdFacePipeline

    pipe = IdFacePipeline.from_pretrained(args.checkpoint)
    report = evaluate(pipe, Path(args.out) if args.out else None)
    print(json.dumps(report, indent=1))
    return 0 if all(report["bars"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
