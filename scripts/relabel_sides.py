"""Convert a model trained with the old side convention (l_* = image LEFT) to CelebAMask-HQ's
(l_* = subject's left = image RIGHT), exactly: the converted model on a relabelled mask computes
the same image as the old model on the old mask.

    python scripts/relabel_sides.py OLD_MODEL_DIR OUT_DIR

Every class-indexed tensor swaps its l_*/r_* rows (labels.FLIP_PERMUTATION): the style encoder's
mask input channels, per-class code layers and default codes, and the mask embedder's per-class
input channels. The cross-attention has no token positions, so permuting the class codes
permutes its keys and values and leaves its output unchanged.
"""

from __future__ import annotations

import argparse

import torch


from idface.labels import FLIP_PERMUTATION  # noqa: E402
from idface.model.idface_model import IdFaceModel  # noqa: E402


def relabel_sides(model: IdFaceModel) -> IdFaceModel:
    perm = torch.as_tensor(FLIP_PERMUTATION)
    k = model.config.num_classes
    with torch.no_grad():
        enc = model.style_encoder
        stem = enc.stem[0].weight                                    # [C, 3 + K, 3, 3]
        stem[:, 3:] = stem[:, 3 + perm].clone()
        for p in list(enc.code_weight) + list(enc.code_bias) + [enc.default_codes]:
            p.copy_(p[perm].clone())                                 # [K, ...]
        conv = model.generator.mask_embedder.conv.weight            # [C0, K - 1, 1, 1] (no background)
        conv.copy_(conv[:, perm[1:] - 1].clone())
    assert len(perm) == k
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("out")
    args = ap.parse_args(argv)
    model = IdFaceModel.from_pretrained(args.old)
    relabel_sides(model).save_pretrained(args.out)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
