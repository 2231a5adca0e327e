"""Publish a finished demo training run as the bundled checkpoint weights/idface-demo.

    OMP_NUM_THREADS=1 python -m idface train --config configs/demo.json --resume none          # stage 1
    OMP_NUM_THREADS=1 python -m idface train --config configs/demo-inject.json --resume none   # stage 2
    python scripts/export_demo_checkpoint.py        # runs/demo-inject/final -> weights/idface-demo

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

Two stages at {size}x{size} on 2 CPU cores shared with other jobs, one torch thread (under that
contention several times faster than two):

1. **Reconstruction** (`configs/demo.json`): 5200 steps of batch 2, 50 minutes, identity token
   always from the photo itself. Losses: L1 (20), hinge adversarial (1) with feature matching
   (10) from a small two-scale patch discriminator, cross-attention mask loss (1), identity loss
   1 - cos with the frozen dlib ResNet (2); Adam G 0.0004 / D 0.0003, decay over the last 1500
   steps, EMA 0.995. This model ignored its identity token (1-2 % of the attention; swapping the
   token changed the image by 0.015/255). Its weights were trained when idface's label maps used
   the image-left side convention; they were converted exactly to CelebAMask-HQ's convention by
   swapping the left/right class channels (`scripts/relabel_sides.py`, max difference 1.6e-6).
2. **Identity injection** (`configs/demo-inject.json`, these weights): {steps} steps of batch
   {batch} ({minutes:.0f} minutes) from stage 1, with a new identity path: every transformer
   block's output is modulated by a zero-initialised linear map of the identity token (FiLM,
   `identity_film` in the model config), learning {lr_scale:g}x faster than the rest. For
   {fraction:.0%} of the samples the token comes from another person B: a pool of {pool_size}
   embeddings (each photo plain and in {views} augmented views; {interp:.0%} of the foreign tokens
   are spherical interpolations between two people). Held out of the pool (never a foreign
   token): {holdout}. Losses as stage 1 (appearance terms compare with the photo A also for
   foreign tokens) plus, own token: identity loss ({w_id}); foreign token: 1 - cos to B's embedding
   ({w_inj}) and a hinge pushing the dlib distance to A past 0.6 + {margin} ({w_away}).
   Adam G {lr_g} / D {lr_d}, decay over the last {decay} steps, EMA {ema} (these weights).

Short trials from stage 1 (300 steps each, raw weights, judged by the dlib port in the frame):
FiLM path at the base learning rate with a hinge away from A (weight 2) stronger than the own-token
identity loss (2): the generator made every face unrecognisable instead of using the token
(injected and own-token outputs 55 dB apart, own-token distance to the photo 0.48-0.78). Without
the hinge, the pull to B at 8 and the identity path learning 10x faster: the token began to matter
(38.8 dB apart) but 1 of 24 pairs read B. Pull to B at 20, hinge 1, a constant learning rate of
4e-4: 75 % read B and 88 % no longer A after 300 steps, own-token distances 0.36-0.53; the final
run raised the own-token identity loss to 8 so that an ambiguous face costs as much as it gains.
The planning trial (no identity path, the token only in the cross-attention) had left own-token
and foreign-token outputs the same image (76-80 dB apart).

Reproduce: the three commands at the top of `scripts/export_demo_checkpoint.py` (stage 2 reads
stage 1 from `runs/demo/final`; float results differ in the last bits with other thread counts or
CPUs, and a fresh stage 1 starts from other random weights than the converted one used here).

## Sizes

{params} parameters (style encoder {p_style}, identity projection {p_id}, generator with mask
embedder {p_gen}); context [B, 20, {code_dim}]; weights float16, {mbytes:.1f} MB.

## Measured (scripts/eval_demo.py, at {size}x{size})

{metrics}

Contact sheet: `contact_sheet.png` (training photos and reconstructions; mask edits with their
change maps; hair swaps; identity injection: A, B, output with dlib's distances to B and to A).

## What it cannot do

- It **cannot generalise to new faces**: with six training photos it has learnt those six
  faces, their masks and their styles. An uploaded face gets colours from its style codes but
  the shapes, textures and identity of something between the six; identity injection into a new
  face is not meaningful with this checkpoint. Its injection has learnt four people (and
  interpolations between them): a token from somebody else lands somewhere among them.
- The injection is an adversarial effect on dlib's ResNet, learnt from its own gradients (the
  PyTorch port); nothing here says whether other recognizers are fooled.
- {size}x{size} output only, blurry next to the paper's 256x256 model.
- Mask edits and region swaps work best on the six training faces and for classes they contain
  (no earrings, necklaces; one hat, one pair of glasses). Edits are mostly local but not
  perfectly: the mask embedder is one dense layer over the whole mask, so changing one region
  also shifts the rest of the face a little (the "outside" column above).

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
    lines = ["| photo | PSNR (dB) | port distance (frame) | dlib itself vs the photo | same person (< 0.6) |", "|---|---|---|---|---|"]
    for r in report["reconstruction"]:
        d = r["dlib_distance_to_photo"]
        lines.append(f"| {r['name']} | {r['psnr_db']:.2f} | {r['identity_score']:.3f} | {'no face' if d is None else f'{d:.3f}'} | "
                     f"{'yes' if r['same_person'] and r['dlib_same_person'] else 'no'} |")
    lines += ["", f"Mean PSNR {report['mean_psnr_db']:.2f} dB; dlib ResNet calls "
              f"{report['same_person_share']:.0%} of the reconstructions the same person as the photo.", "",
              "| mask edit | photo | mean change inside (0-255) | outside | ratio |", "|---|---|---|---|---|"]
    for e in report["mask_edits"]:
        lines.append(f"| {e['edit']} | {e['photo']} | {e['mean_change_inside']:.1f} | {e['mean_change_outside']:.2f} | {e['ratio']:.0f} |")
    lines += ["", "| hair swap | hair colour distance to donor's, before -> after | change inside / outside hair |", "|---|---|---|"]
    for w in report["hair_swaps"]:
        lines.append(f"| {w['donor']}'s hair on {w['target']} | {w['hair_colour_distance_to_donor_before']:.0f} -> "
                     f"{w['hair_colour_distance_to_donor_after']:.0f} | {w['mean_change_inside']:.1f} / {w['mean_change_outside']:.2f} |")
    inj = report["injection"]
    lines += ["", f"Identity injection, judged by dlib itself ({inj['judge']}), {inj['pairs']} ordered pairs of different "
              "people (mask and style of A, identity token of B):", "",
              "| | reads B (distance < 0.57) | no longer A (>= 0.6) | both |", "|---|---|---|---|",
              f"| PNG as written | {inj['reads_B']:.0%} | {inj['not_A']:.0%} | {inj['both']:.0%} |",
              f"| after half size + JPEG 75 | {inj['reads_B_recompressed']:.0%} | {inj['not_A_recompressed']:.0%} | {inj['both_recompressed']:.0%} |",
              "", f"Held-out identity sources ({', '.join(inj['held_out_sources']) or 'none'}; {inj['held_out_pairs']} pairs): "
              f"read B in {inj['held_out_reads_B']:.0%} (recompressed {inj['held_out_reads_B_recompressed']:.0%}). "
              f"Injected output vs the own-token output: PSNR min {inj['psnr_vs_own_token_db_min']:.1f} dB, "
              f"median {inj['psnr_vs_own_token_db_median']:.1f} dB.", "",
              "| A | B | distance to B / to A (PNG) | recompressed | PSNR vs own token (dB) |", "|---|---|---|---|---|"]
    fmt = lambda d: "no face" if d is None else f"{d:.2f}"  # noqa: E731
    for i in report["injection_pairs"]:
        lines.append(f"| {i['A']} | {i['B']}{' (held out)' if i['B_held_out'] else ''} | {fmt(i['png']['distance_to_B'])} / "
                     f"{fmt(i['png']['distance_to_A'])} | {fmt(i['recompressed']['distance_to_B'])} / "
                     f"{fmt(i['recompressed']['distance_to_A'])} | {i['psnr_vs_own_token_db']:.1f} |")
    lines += ["", "Bars: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in report["bars"].items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=str(REPO / "runs" / "demo-inject"))
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
    from idface.training.config import load_config

    train_cfg = load_config(run / "config.json")
    # the identity pool's held-out photos travel with the checkpoint (scripts/eval_demo.py reads them)
    config = json.loads((dest / "config.json").read_text())
    config.setdefault("extra", {})["identity_pool"] = {"holdout": list(train_cfg.identity_pool.get("holdout", []))}
    (dest / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    from idface.model import IdFaceModel
    from idface.pipeline import IdFacePipeline
    model = IdFaceModel.from_pretrained(str(dest))
    report = _load_eval().evaluate(IdFacePipeline(model), dest)
    counts = model.parameter_counts()
    aug = train_cfg.augment
    w = train_cfg.loss_weights
    pool = train_cfg.identity_pool
    held = pool.get("holdout", [])
    pool_size = sum(1 for p in train_cfg.data["pairs"] if not any(Path(p["image"]).stem == h or Path(p["image"]).stem.startswith(f"{h}_") for h in held)) * (1 + pool.get("views", 4))
    steps = stopped_at if stopped_at is not None else int(train_cfg.max_steps)
    card = CARD.format(
        scale=tuple(aug.get("scale", (1, 1))), shift=aug.get("shift", 0), rotate=aug.get("rotate", 0),
        warp=aug.get("warp", 0), colour=aug.get("brightness", 0),
        steps=steps, batch=train_cfg.batch_size, images=steps * train_cfg.batch_size,
        minutes=args.minutes if args.minutes is not None else training_minutes(run),
        size=model.config.image_size, w_id=w.identity, w_inj=w.injection, w_away=w.injection_away,
        margin=train_cfg.injection_margin, fraction=train_cfg.injection_fraction,
        lr_scale=train_cfg.lr_identity_scale, views=pool.get("views", 4), interp=pool.get("interpolate", 0.5),
        pool_size=pool_size, holdout=", ".join(pool.get("holdout", [])) or "none",
        lr_g=train_cfg.lr_g, lr_d=train_cfg.lr_d,
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
