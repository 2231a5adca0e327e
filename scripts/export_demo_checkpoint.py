"""Publish a finished demo training run as the bundled checkpoint weights/idface-demo.

    OMP_NUM_THREADS=1 python -m idface train --config configs/demo.json --resume none
    python scripts/export_demo_checkpoint.py                # runs/demo/final -> weights/idface-demo

Copies the run's EMA model (config.json + float16 model.safetensors), measures it with
scripts/eval_demo.py (eval.json + contact_sheet.png beside the weights) and writes the model card
(README.md) with what it was trained on, for how long and what it cannot do.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MAX_BYTES = 30 * 2**20

CARD = """---
license: other
license_name: idface-demo-non-commercial
library_name: pytorch
tags:
- idface
- semantic-image-synthesis
- face-generation
- demo
pipeline_tag: image-to-image
---

# idface demo checkpoint (small, trained on six photos)

A **demo** of identity-aware semantic face synthesis (Tarollo et al., "Adversarial Identity
Injection for Semantic Face Image Synthesis", CVPR 2024 Workshops, arXiv 2404.10408), small enough
to ship inside the repository so that the idface app runs end to end on a fresh, offline machine.
It is **not** the paper's model: that one is trained on CelebAMask-HQ (28,000 faces) with GPUs
and is loaded from the Hugging Face Hub when configured (`IDFACE_CHECKPOINT`).

## What it was trained on

The six public-domain photos bundled in `assets/faces` (Eileen Collins, Grace Hopper, Barack
Obama x3, Joe Biden), aligned to the generator frame, with hand-corrected 19-class label maps,
plus three recoloured copies of each (hair, clothes and background shifted to random colours, so
that region colours must come from the style codes): 24 image/map pairs in `assets/train`, made
by `scripts/make_demo_data.py`, provenance in `assets/train/PROVENANCE.md`.
Heavy augmentation: horizontal flips with left/right classes swapped, zoom {scale}, shift
+-{shift}, rotation +-{rotate} deg, smooth joint image+mask deformation ({warp} of the side:
the "mask edit" augmentation), brightness/contrast/saturation +-{colour}, gamma.

## How long, on what

{steps} steps of batch {batch} ({images} augmented images), {minutes:.0f} minutes wall-clock on
2 CPU cores shared with other jobs (load average falling from about 9 to about 3 during the run;
one torch thread: under that contention it ran several times faster than two), at {size}x{size}.
The run was stopped and resumed from its checkpoints three times to lengthen the schedule while
the learning rate was still constant (the trainer resumes bit-exactly), so the weights are those
of one run of `configs/demo.json`. Two earlier attempts (about 20 minutes together, milder colour
augmentation and no recoloured copies) were discarded because style codes had no effect on hair. Losses: L1 (weight {w_l1}), hinge adversarial ({w_adv}) with feature matching
({w_fm}) from a small two-scale patch discriminator, cross-attention mask loss ({w_attn}), identity
loss 1 - cos with the frozen dlib ResNet ({w_id}). VGG perceptual loss was off (no VGG19 weights
offline). Adam G {lr_g} / D {lr_d}, betas (0, 0.9), linear decay over the last {decay} steps, EMA
{ema} (these weights). Identity encoder: dlib's face-recognition ResNet (128-d, public domain)
through idface's PyTorch port; identity token = projected embedding.

Reproduce: `OMP_NUM_THREADS=1 python -m idface train --config configs/demo.json --resume none`
then `python scripts/export_demo_checkpoint.py` (float results differ in the last bits with other
thread counts or CPUs).

## Sizes

{params} parameters (style encoder {p_style}, identity projection {p_id}, generator with mask
embedder {p_gen}); context [B, 20, {code_dim}]; weights float16, {mbytes:.1f} MB.

## Measured (scripts/eval_demo.py, at {size}x{size})

{metrics}

Contact sheet: `contact_sheet.png` (training photos and reconstructions; mask edits with their
change maps; hair swaps).

## What it cannot do

- It **cannot generalise to new faces**: with six training photos it has learnt those six
  faces, their masks and their styles. An uploaded face gets colours from its style codes but
  the shapes, textures and identity of something between the six; identity injection into a new
  face is not meaningful with this checkpoint.
- {size}x{size} output only, blurry next to the paper's 256x256 model.
- Mask edits and region swaps work best on the six training faces and for classes they contain
  (no earrings, necklaces; one hat, one pair of glasses). Edits are mostly local but not
  perfectly: the mask embedder is one dense layer over the whole mask, so changing one region
  also shifts the rest of the face a little (the "outside" column above).
- Its identity verdicts come from dlib's ResNet only; they say nothing about other recognizers.

Images it generates are synthetic. Photos of public figures; see `assets/faces/PROVENANCE.md`.
Licence: the training label maps were derived with dlib's 68-point landmark model, trained on
iBUG 300-W whose licence excludes commercial use; treat these weights as non-commercial too.
"""


def _load_eval():
    spec = importlib.util.spec_from_file_location("eval_demo", REPO / "scripts" / "eval_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_minutes(run: Path) -> float:
    """Wall-clock minutes between the first and last TensorBoard event of the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    ea.Reload()
    times = [e.wall_time for tag in ea.Tags()["scalars"] for e in ea.Scalars(tag)]
    state = json.loads((run / "config.json").read_text())
    first_log = state.get("log_every", 1)
    span = (max(times) - min(times)) / 60.0 if times else 0.0
    # the first event is written after `log_every` steps: add that share
    steps = max(e.step for tag in ea.Tags()["scalars"] for e in ea.Scalars(tag))
    return span * steps / max(1, steps - first_log)


def metrics_table(report: dict) -> str:
    lines = ["| photo | PSNR (dB) | dlib distance | same person (< 0.6) |", "|---|---|---|---|"]
    for r in report["reconstruction"]:
        lines.append(f"| {r['name']} | {r['psnr_db']:.2f} | {r['identity_score']:.3f} | {'yes' if r['same_person'] else 'no'} |")
    lines += ["", f"Mean PSNR {report['mean_psnr_db']:.2f} dB; dlib ResNet calls "
              f"{report['same_person_share']:.0%} of the reconstructions the same person as the photo.", "",
              "| mask edit | photo | mean change inside (0-255) | outside | ratio |", "|---|---|---|---|---|"]
    for e in report["mask_edits"]:
        lines.append(f"| {e['edit']} | {e['photo']} | {e['mean_change_inside']:.1f} | {e['mean_change_outside']:.2f} | {e['ratio']:.0f} |")
    lines += ["", "| hair swap | hair colour distance to donor's, before -> after | change inside / outside hair |", "|---|---|---|"]
    for w in report["hair_swaps"]:
        lines.append(f"| {w['donor']}'s hair on {w['target']} | {w['hair_colour_distance_to_donor_before']:.0f} -> "
                     f"{w['hair_colour_distance_to_donor_after']:.0f} | {w['mean_change_inside']:.1f} / {w['mean_change_outside']:.2f} |")
    lines += ["", "Bars: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in report["bars"].items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "demo"))
    ap.add_argument("--dest", default=str(REPO / "weights" / "idface-demo"))
    ap.add_argument("--minutes", type=float, default=None, help="training wall-clock (default: from TensorBoard)")
    ap.add_argument("--checkpoint", default=None,
                    help="export this training checkpoint's EMA (runs/demo/checkpoints/step_N) instead of final/, "
                         "converted to float16 (for a run stopped early; the card then says so)")
    args = ap.parse_args(argv)
    run, dest = Path(args.run), Path(args.dest)
    final = run / "final"
    stopped_at = None
    if args.checkpoint:
        import torch
        from safetensors.torch import load_file, save_file

        ckpt_dir = Path(args.checkpoint)
        stopped_at = int(json.loads((ckpt_dir / "trainer_state.json").read_text())["step"])
        final = Path("/tmp") / f"idface-demo-export-{stopped_at}"
        final.mkdir(parents=True, exist_ok=True)
        state = load_file(str(ckpt_dir / "ema" / "model.safetensors"))
        save_file({k: v.to(torch.float16) for k, v in state.items()}, str(final / "model.safetensors"),
                  metadata={"format": "pt"})
        shutil.copyfile(ckpt_dir / "ema" / "config.json", final / "config.json")
    for name in ("config.json", "model.safetensors"):
        if not (final / name).is_file():
            print(f"{final / name} not found: has the run finished?", file=sys.stderr)
            return 1

    from safetensors import safe_open

    with safe_open(str(final / "model.safetensors"), framework="pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    if dtypes != {"F16"}:
        print(f"expected float16 weights (export_dtype float16), found {sorted(dtypes)}", file=sys.stderr)
        return 1
    size = (final / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        print(f"model.safetensors is {size / 2**20:.1f} MB, over the 30 MB budget", file=sys.stderr)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(final / name, dest / name)

    from idface.model import IdFaceModel
    from idface.pipeline import IdFacePipeline
    from idface.training.config import load_config

    train_cfg = load_config(run / "config.json")
    model = IdFaceModel.from_pretrained(str(dest))
    report = _load_eval().evaluate(IdFacePipeline(model), dest)
    counts = model.parameter_counts()
    aug = train_cfg.augment
    w = train_cfg.loss_weights
    steps = stopped_at if stopped_at is not None else int(train_cfg.max_steps)
    card = CARD.format(
        scale=tuple(aug.get("scale", (1, 1))), shift=aug.get("shift", 0), rotate=aug.get("rotate", 0),
        warp=aug.get("warp", 0), colour=aug.get("brightness", 0),
        steps=steps, batch=train_cfg.batch_size, images=steps * train_cfg.batch_size,
        minutes=args.minutes if args.minutes is not None else training_minutes(run),
        size=model.config.image_size, w_l1=w.l1, w_adv=w.adversarial, w_fm=w.feature_matching,
        w_attn=w.attention, w_id=w.identity, lr_g=train_cfg.lr_g, lr_d=train_cfg.lr_d,
        decay=train_cfg.decay_steps, ema=train_cfg.ema_decay,
        params=f"{counts['total']:,}", p_style=f"{counts['style_encoder']:,}",
        p_id=f"{counts['identity_projection']:,}", p_gen=f"{counts['generator']:,}",
        code_dim=model.config.code_dim, mbytes=size / 1e6, metrics=metrics_table(report),
    )
    (dest / "README.md").write_text(card)
    print(json.dumps({"dest": str(dest), "bytes": size, "bars": report["bars"],
                      "mean_psnr_db": report["mean_psnr_db"], "same_person_share": report["same_person_share"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
