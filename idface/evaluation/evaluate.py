"""`python -m idface eval --checkpoint C --data D [--json] [--out DIR]`

Evaluates a generator checkpoint on the test split of a prepared data set (or on the data of a
training config, e.g. `--data configs/demo.json` for the bundled demo photos):

- reconstruction (mask, style and identity from the same test face): PSNR, SSIM, LPIPS, FID, KID;
- identity preservation, per available recognizer: mean score of output vs source and the share
  judged the same person at that recognizer's own threshold;
- identity injection: pairs (A, B) of different people (different CelebA identities when known,
  else different images; every ordered pair on small sets); the output keeps A's mask and style
  and takes B's identity token. Per recognizer, by its own rule: the share verified as B, no
  longer A, both (success), also after recompression (half size + JPEG 75); the appearance cost
  as PSNR / SSIM of the injected output against the output with A's own token;
- mask fidelity: mIoU between the input mask and the output re-parsed by a face parser, when
  one is available (the parser used is named in the report).

A metric that cannot be computed here (weights not available offline, no parser, too few
images) is reported as "unavailable: reason", never estimated. Output: a Markdown table on
stdout (or JSON with --json), and metrics.json + metrics.md in --out when given.

--checkpoint takes a Hub-format folder (config.json + model.safetensors), a Hub repo id, a
training checkpoint folder (its ema/ is used) or a run folder (its final/ or latest checkpoint).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from idface import metrics as M
from idface.errors import IdfaceError, InputError, UnavailableError
from idface.tensors import onehot
from idface.training.data import FaceMaskDataset, collate
from idface.training.validate import embed, reconstruction_metrics, recognizer_scores

log = logging.getLogger("idface.eval")


# ---------------------------------------------------------------------------------------------
# recognizers

def evaluator_recognizers() -> tuple[dict, dict[str, str]]:
    """Every recognizer the registry can load here, and the reasons for the others."""
    try:
        from idface.identity.registry import available_recognizers, get_recognizer, recognizer_status
    except ImportError as err:
        return {}, {"identity": f"idface.identity.registry is not importable: {err}"}
    recs, missing = {}, {}
    status = recognizer_status()
    for name in status:
        if name not in available_recognizers():
            missing[name] = str(status[name])
            continue
        try:
            rec = get_recognizer(name)
            if isinstance(rec, torch.nn.Module):
                rec.eval().requires_grad_(False)
            recs[name] = rec
        except IdfaceError as err:
            missing[name] = str(err)
    return recs, missing


# ---------------------------------------------------------------------------------------------
# metrics over a data set

# at most this many images: every ordered pair of different people (the bundled demo photos);
# more: each image with the next image of another person
ALL_PAIRS_MAX_IMAGES = 12


def injection_pairs(dataset: FaceMaskDataset, limit: int | None) -> list[tuple[int, int]]:
    """(A, B) pairs of different people (different identities when known, else different images):
    every ordered pair for small sets (<= ALL_PAIRS_MAX_IMAGES), else B is the next image of
    another person."""
    n = len(dataset) if not limit else min(limit, len(dataset))
    ids = dataset.identities

    def different(a: int, b: int) -> bool:
        return a != b and (ids[a] < 0 or ids[b] < 0 or ids[a] != ids[b])

    if len(dataset) <= ALL_PAIRS_MAX_IMAGES:
        return [(a, b) for a in range(n) for b in range(len(dataset)) if different(a, b)]
    pairs = []
    for a in range(n):
        for k in range(1, len(dataset)):
            b = (a + k) % len(dataset)
            if different(a, b):
                pairs.append((a, b))
                break
    return pairs


def _recompressed(image: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> what sharing makes of it (idface.conceal.transforms.recompress:
    half size, JPEG 75), [B, 3, H/2, W/2] in [-1, 1], through uint8 as a written PNG would be."""
    from idface.conceal.transforms import recompress

    out = []
    for img in image:
        rgb = ((img.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        out.append(torch.from_numpy(recompress(rgb)).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out).to(image.device)


@torch.no_grad()
def injection_metrics(model, dataset: FaceMaskDataset, device, recognizers: dict, identity_recognizer,
                      limit: int | None = None, batch_size: int = 4) -> dict:
    """Identity injection (mask + style of A, identity token of B) per recognizer, each by its own
    same-person rule against the photos A and B: the share that reads as B, that no longer reads
    as A, and both (success), on the output as generated (uint8) and after recompression (half
    size + JPEG 75); and the appearance cost: PSNR / SSIM of the injected output against the
    output with A's own token (what the identity token changed)."""
    cfg = model.config
    pairs = injection_pairs(dataset, limit)
    if not pairs:
        raise UnavailableError("identity injection needs at least two images of different people")
    res = {name: {k: [] for k in ("as_b", "as_a", "score_b", "score_a", "as_b_re", "as_a_re")} for name in recognizers}
    psnrs, ssims = [], []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        a = collate([dataset[i] for i, _ in chunk])
        b = collate([dataset[j] for _, j in chunk])
        real_a, real_b = a["image"].to(device), b["image"].to(device)
        mask = onehot(a["label"].to(device), cfg.num_classes)
        fake = model(mask, real_a, identity_embedding=embed(identity_recognizer, real_b)).float().clamp(-1, 1)
        own = model(mask, real_a, identity_embedding=embed(identity_recognizer, real_a)).float().clamp(-1, 1)
        fake = ((fake + 1) * 127.5).round() / 127.5 - 1                           # as written (uint8)
        psnrs += M.psnr((fake + 1) / 2, (own + 1) / 2, data_range=1.0).tolist()
        ssims += M.ssim_rgb((fake + 1) / 2, (own + 1) / 2).tolist()
        shared = _recompressed(fake)
        for name, rec in recognizers.items():
            e_a, e_b = embed(rec, real_a), embed(rec, real_b)
            r = res[name]
            for suffix, image in (("", fake), ("_re", shared)):
                e_fake = embed(rec, image)
                sb, same_b = recognizer_scores(rec, e_fake, e_b)
                sa, same_a = recognizer_scores(rec, e_fake, e_a)
                r["as_b" + suffix] += same_b.tolist()
                r["as_a" + suffix] += same_a.tolist()
                if not suffix:
                    r["score_b"] += sb.tolist()
                    r["score_a"] += sa.tolist()
    out = {"injection_pairs": len(pairs),
           "injection_psnr_vs_own_token_db": float(np.mean([p for p in psnrs if math.isfinite(p)] or [float("inf")])),
           "injection_ssim_rgb_vs_own_token": float(np.mean(ssims))}
    for name, r in res.items():
        for suffix, label in (("", ""), ("_re", "_recompressed")):
            as_b, as_a = np.asarray(r["as_b" + suffix]), np.asarray(r["as_a" + suffix])
            out[f"injection_verified_as_B{label}[{name}]"] = float(as_b.mean())
            out[f"injection_not_A{label}[{name}]"] = float((~as_a).mean())
            out[f"injection_success{label}[{name}]"] = float((as_b & ~as_a).mean())
        out[f"injection_still_A[{name}]"] = float(np.mean(r["as_a"]))
        out[f"injection_score_vs_B[{name}]"] = float(np.mean(r["score_b"]))
        out[f"injection_score_vs_A[{name}]"] = float(np.mean(r["score_a"]))
    return out


def load_parser():
    """idface.faces.parse.parse_frame with its "auto" choice (a facexlib network where its
    weights are local, else the mesh parser when the npm face graphs are present, else the
    landmark parser), or UnavailableError with the reason."""
    try:
        from idface.faces.parse import init_parsing_model, parse_frame
        model = init_parsing_model("auto")
    except (ImportError, IdfaceError) as err:
        raise UnavailableError(f"no face parser: {err}") from None
    missing = tuple(getattr(model, "missing_classes", ()))
    desc = f"idface.faces.parse '{model.name}'" + (f" (cannot produce {', '.join(missing)})" if missing else "")
    return parse_frame, desc


def mask_fidelity(outputs: list, num_classes: int, parser) -> dict:
    """mIoU between input masks and the re-parsed outputs (collected by reconstruction_metrics).
    Outputs in which the parser finds no face are counted and left out."""
    from PIL import Image

    fn, desc = parser
    preds, targets, failed = [], [], 0
    for batch, fake in outputs:
        for k in range(fake.shape[0]):
            rgb = ((fake[k].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
            target = batch["label"][k].numpy()
            try:
                parsed = np.asarray(fn(rgb, size=target.shape[0]).label_map)
            except IdfaceError:
                failed += 1
                continue
            if parsed.shape != target.shape:
                parsed = np.asarray(Image.fromarray(parsed.astype(np.uint8)).resize(target.shape[::-1], Image.Resampling.NEAREST))
            preds.append(parsed)
            targets.append(target)
    if not preds:
        raise UnavailableError(f"{desc} found no face in any of the {failed} outputs")
    return {"mask_miou": M.mean_iou(np.stack(preds), np.stack(targets), num_classes), "mask_parser": desc,
            "mask_parsed_outputs": f"{len(preds)} of {len(preds) + failed}"}


# ---------------------------------------------------------------------------------------------

def resolve_model_folder(checkpoint: str) -> str:
    """A local model folder, training checkpoint or run folder; anything else goes through
    idface.hub.resolve_checkpoint (Hub repo ids, revisions, the pinning rule), which raises
    WeightsNotFoundError naming every place tried."""
    p = Path(checkpoint)
    if not p.exists():
        from idface.hub import resolve_checkpoint

        return str(resolve_checkpoint(checkpoint).path)
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return str(p)
    if (p / "ema" / "config.json").is_file():
        return str(p / "ema")
    if (p / "final" / "config.json").is_file():
        return str(p / "final")
    from idface.training.checkpoint import list_checkpoints

    found = list_checkpoints(p)
    if found:
        return str(found[-1] / "ema")
    raise InputError(f"{checkpoint}: neither a model folder (config.json + model.safetensors), a training checkpoint nor a run folder")


def evaluate(checkpoint: str, data: str, split: str = "test", limit: int | None = None, batch_size: int = 4,
             device: str = "cpu") -> dict:
    from idface.model.idface_model import IdFaceModel

    folder = resolve_model_folder(checkpoint)
    model = IdFaceModel.from_pretrained(folder).to(device).eval()
    size = model.config.image_size
    if str(data).endswith(".json"):
        # a training config: its data (e.g. the demo's bundled pairs; "test" = its test_pairs or pairs)
        from idface.training.config import REPO_ROOT, load_config
        from idface.training.data import dataset_from_config

        dataset = dataset_from_config(load_config(data).data, size, "train" if split == "train" else "test", None, REPO_ROOT)
    else:
        try:
            dataset = FaceMaskDataset.from_prepared(data, split, size)
        except InputError:
            if split != "test":
                raise
            dataset = FaceMaskDataset.from_prepared(data, "all", size)
            split = "all (no test split)"
    report: dict = {"checkpoint": folder, "data": str(data), "split": split, "model": model.config.name}
    unavailable: dict[str, str] = {}
    recs, missing = evaluator_recognizers()
    for name, why in missing.items():
        unavailable[f"identity[{name}]"] = why
    id_rec = recs.get(model.config.identity_recognizer)
    if id_rec is None:
        unavailable["identity_token"] = f"the model's recognizer {model.config.identity_recognizer!r} is unavailable: outputs use the null identity token"

    lpips_metric = fid_metric = None
    try:
        lpips_metric = M.LPIPSMetric(device)
    except UnavailableError as err:
        unavailable["lpips"] = str(err)
    try:
        fid_metric = M.FIDMetric(device)
    except UnavailableError as err:
        unavailable["fid"] = unavailable["kid"] = str(err)

    outputs: list = []
    report.update(reconstruction_metrics(model, dataset, device, recs, limit, batch_size, id_rec,
                                         lpips_metric, fid_metric, collect=outputs))
    if fid_metric is not None:
        try:
            report.update(fid_metric.results())  # fid, kid_mean, kid_std, fid_note
        except UnavailableError as err:
            unavailable["fid"] = unavailable["kid"] = str(err)
    if id_rec is None:
        unavailable["injection"] = "no identity token source (the model's recognizer is unavailable)"
    elif not recs:
        unavailable["injection"] = "no recognizer available to judge identity"
    else:
        try:
            report.update(injection_metrics(model, dataset, device, recs, id_rec, limit, batch_size))
        except UnavailableError as err:
            unavailable["injection"] = str(err)
    try:
        report.update(mask_fidelity(outputs, model.config.num_classes, load_parser()))
    except UnavailableError as err:
        unavailable["mask_miou"] = str(err)
    for name, rec in recs.items():
        rule = ">=" if getattr(rec, "higher_is_more_similar", True) else "<"
        report[f"same_person_rule[{name}]"] = (f"{getattr(rec, 'metric', 'score')} {rule} {getattr(rec, 'threshold', '?')} "
                                              f"({getattr(rec, 'threshold_source', 'unknown source')})")
    report["unavailable"] = unavailable
    return report


def to_markdown(report: dict) -> str:
    lines = [f"# idface evaluation: {report.get('checkpoint')}", "",
             f"data {report.get('data')} ({report.get('split')}, {report.get('images')} images), model {report.get('model')}", "",
             "| metric | value |", "|---|---|"]
    for k, v in report.items():
        if k in ("checkpoint", "data", "split", "model", "unavailable"):
            continue
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    for k, why in report.get("unavailable", {}).items():
        lines.append(f"| {k} | unavailable: {why} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model folder, Hub repo id, training checkpoint or run folder")
    parser.add_argument("--data", required=True, help="prepared data folder (python -m idface prepare), or a training config .json whose data to use")
    parser.add_argument("--split", default="test", help="test (default), train or all")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    parser.add_argument("--out", default=None, help="also write metrics.json and metrics.md into this folder")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    report = evaluate(args.checkpoint, args.data, args.split, args.limit, args.batch_size, args.device)
    md = to_markdown(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report, indent=2))
        (out / "metrics.md").write_text(md)
    print(json.dumps(report, indent=2) if args.json else md)
    return 0
