"""`conceal(...)`: one entry point for both goals and the three modes; the CLI, the app panel and
the benchmark all call it and show the report it returns.

    result = conceal("A.jpg", "B.jpg", goal="impersonate", mode="photo", regions="skin,nose",
                     attack=["dlib-resnet"])
    result.image     # the attacked photo (photo mode) or generated face (token / swap), uint8
    result.original  # what distortion is measured against: photo A, or the unattacked output
    result.report    # JSON-ready dict, see build_report

Modes: "photo" (perturb photo A inside the chosen regions, no generator), "swap" (the paper's
identity-token swap, one generator pass), "token" (test-time optimisation of the identity token;
`regions` then names the class codes optimised with it, none by default).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np
import torch

from idface.conceal.generator_modes import TokenAttackSettings
from idface.conceal.goals import DODGE, GOAL_CONDITIONS, IMPERSONATE, Reference, check_goal, wanted_margin
from idface.conceal.photo import PhotoAttackSettings
from idface.conceal.transforms import describe_recompression
from idface.errors import InputError, UnavailableError
from idface.metrics import LPIPSMetric, psnr, ssim_luma

MODES = ("photo", "token", "swap")
GENERATOR_MODES = ("token", "swap")


@dataclass
class ConcealResult:
    image: np.ndarray                       # [H, W, 3] uint8
    original: np.ndarray                    # [H, W, 3] uint8, the unattacked reference
    report: dict
    mask: np.ndarray | None = None          # photo mode: [H, W] bool, the pixels allowed to change
    label_map: np.ndarray | None = None     # photo mode: [H, W] parser classes in the photo's pixels
    history: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Recognizers


def select_recognizers(attack: str | list[str] | tuple | None, device: str = "cpu") -> tuple[list, list, dict[str, str]]:
    """-> (attacked recognizers, other available recognizers (transfer), unavailable name -> reason).
    `attack` None or empty: every available recognizer."""
    from idface.identity.registry import RECOGNIZER_NAMES, get_recognizer, recognizer_status

    status = recognizer_status()
    if isinstance(attack, str):
        attack = [a.strip() for a in attack.split(",") if a.strip()]
    names = list(attack or [])
    for name in names:
        if name not in RECOGNIZER_NAMES:
            raise InputError(f"unknown recognizer {name!r}; known: {', '.join(RECOGNIZER_NAMES)}")
        if status[name] != "available":
            raise UnavailableError(f"{name} cannot be attacked on this machine: {status[name]}")
    if not names:
        names = [n for n, s in status.items() if s == "available"]
        if not names:
            raise UnavailableError("no face recognizer is available: " + "; ".join(f"{n}: {s}" for n, s in status.items()))
    unavailable = {n: s for n, s in status.items() if s != "available"}
    attacked, transfer = [], []
    for name in RECOGNIZER_NAMES:
        if name in unavailable:
            continue
        if name in names:
            attacked.append(get_recognizer(name, device))
        else:
            try:
                transfer.append(get_recognizer(name, device))
            except (UnavailableError, InputError) as err:
                unavailable[name] = str(err)
    return attacked, transfer, unavailable


# ---------------------------------------------------------------------------------------------
# Report


def _finite(x: float | None, digits: int = 3):
    if x is None:
        return None
    return None if math.isinf(x) else round(float(x), digits)


def recognizer_entry(rec, attacked: bool, verified: dict, unattacked: dict) -> dict:
    raw, rc = verified["raw"], verified["recompressed"]
    entry = {
        "attacked": attacked,
        "metric": rec.metric,
        "threshold": rec.threshold,
        "higher_is_more_similar": rec.higher_is_more_similar,
        "threshold_source": rec.threshold_source,
    }
    entry.update({k: v for k, v in raw.items() if k != "success_with_margin"})
    entry["recompressed"] = {k: v for k, v in rc.items() if k != "success_with_margin"}
    entry["unattacked"] = {k: v for k, v in unattacked["raw"].items() if k != "success_with_margin"}
    entry["unattacked"]["recompressed"] = {
        k: v for k, v in unattacked["recompressed"].items() if k != "success_with_margin"}
    for block in (entry, entry["recompressed"], entry["unattacked"], entry["unattacked"]["recompressed"]):
        if block.get("goal_margin") is not None and math.isinf(block["goal_margin"]):
            block["goal_margin"] = None
    return entry


def distortion(original: np.ndarray, attacked: np.ndarray) -> dict:
    """The report's distortion block: psnr, ssim_luma, lpips (or the reason it is unavailable)."""
    try:
        to01 = lambda v: torch.from_numpy(np.array(v, np.float32)).permute(2, 0, 1)[None] / 255.0  # noqa: E731
        lpips, note = round(float(LPIPSMetric(download=False)(to01(original), to01(attacked))[0]), 5), None
    except UnavailableError as err:
        lpips, note = "unavailable", str(err)
    return {
        "psnr": psnr(original, attacked),  # inf when identical
        "ssim_luma": round(ssim_luma(original, attacked), 5),
        "lpips": lpips,
        "lpips_note": note,
    }


def conditions_held(blocks: list[dict]) -> dict[str, bool]:
    """Condition -> held in every verdict block (a block with no verdict holds none)."""
    names = [k for b in blocks for k in b.get("conditions", {})]
    return {k: all(b.get("conditions", {}).get(k, {}).get("held", False) for b in blocks) for k in dict.fromkeys(names)}


def build_report(*, goal: str, mode: str, attacked: list, transfer: list, unavailable: dict[str, str],
                 verified: dict, unattacked: dict, original: np.ndarray, image: np.ndarray,
                 seconds: float, extra: dict) -> dict:
    recs = {}
    for rec in attacked + transfer:
        recs[rec.name] = recognizer_entry(rec, rec in attacked, verified[rec.name], unattacked[rec.name])
    dist = distortion(original, image)
    report = {
        "goal": goal,
        "mode": mode,
        "attacked": [r.name for r in attacked],
        # every condition of the goal held by every attacked recognizer, by the wanted margin
        "success": all(recs[r.name]["success"] for r in attacked),
        "success_after_recompression": all(recs[r.name]["recompressed"]["success"] for r in attacked),
        # condition -> held by every attacked recognizer (raw / after re-compression)
        "conditions_held_by_all_attacked": {
            "raw": conditions_held([recs[r.name] for r in attacked]),
            "recompressed": conditions_held([recs[r.name]["recompressed"] for r in attacked]),
        },
        "condition_meanings": GOAL_CONDITIONS,
        "recompression": describe_recompression(),
        "recognizers": recs,
        "transfer": {r.name: {"success": recs[r.name]["success"],
                              "success_after_recompression": recs[r.name]["recompressed"]["success"]}
                     for r in transfer},
        "unavailable": unavailable,
        "psnr": _finite(dist["psnr"]),
        "ssim_luma": dist["ssim_luma"],
        "lpips": dist["lpips"],
        "lpips_note": dist["lpips_note"],
        "seconds": round(seconds, 2),
        "image_size": [int(image.shape[1]), int(image.shape[0])],
        "synthetic": mode != "photo",        # generator output
        "altered_photo": mode == "photo",    # the visitor's own photo, altered
    }
    report.update(extra)
    return report


# ---------------------------------------------------------------------------------------------
# Photo mode


def _photo_mode(photo, target, goal, regions, attacked, transfer, unavailable, settings, progress,
                also=(), parser: str = "auto") -> ConcealResult:
    from idface.conceal.photo import PhotoAttack, make_targets, verify_photo
    from idface.conceal.regions import erosion_pixels, parse_regions, photo_label_map, region_mask, region_names
    from idface.conceal.score import embed_photo_array
    from idface.faces.detect import detect_faces
    from idface.images import load_image

    start = time.perf_counter()
    classes = parse_regions(regions)
    rgb = load_image(photo, "photo")
    det = detect_faces(rgb)
    face = det.chosen
    rgb_b = None if target is None or goal == DODGE else load_image(target, "target photo")
    rgb_also = [load_image(p, f"other photo of A ({i + 1})") for i, p in enumerate(also)]
    references = {}
    for rec in attacked + transfer:
        e_a, _ = embed_photo_array(rec, rgb, detection=det)
        e_b = None if rgb_b is None else embed_photo_array(rec, rgb_b)[0]
        references[rec.name] = Reference(e_a, e_b, [embed_photo_array(rec, x)[0] for x in rgb_also])
    s = settings
    label_map, parse_method = photo_label_map(rgb, face, parser)
    erode_px = erosion_pixels(face.size, s.mask_erosion)
    mask = region_mask(label_map, classes, erode_px)
    if not mask.any():
        raise InputError(f"the parser found none of the regions {', '.join(region_names(classes))} on this face")
    targets = make_targets(rgb, face, attacked, references)
    transfer_targets = make_targets(rgb, face, transfer, references)
    parsed = region_mask(label_map, classes)
    attack = PhotoAttack(rgb, face, mask, targets, goal, s, measure_mask=parsed)
    margin_of = attack.margin
    unattacked = verify_photo(rgb, targets + transfer_targets, goal, margin_of)
    result = attack.run(progress, unattacked=unattacked)
    # the attacked recognizers' verdicts on the returned image were just computed by the attack
    # (same function); the recognizers not attacked are scored here (transfer)
    verified = dict(result.verified)
    if transfer_targets:
        verified.update(verify_photo(result.image, transfer_targets, goal, margin_of))
    changed = np.any(result.image != rgb, axis=-1)
    budget = attack.budget_numbers(result.image)
    extra = {
        "regions": region_names(classes),
        "parser": parse_method,
        "face": det.message,
        "scored_on": "whole photo: detect, align, embed (as recognition systems do)",
        "psnr_region": _finite(psnr(rgb[mask], result.image[mask])),
        # CIEDE2000 colour difference over the chosen classes' pixels (1 is about a just-noticeable step)
        "ciede2000_region_mean": round(budget["ciede2000_mean"], 4),
        "ciede2000_region_p99": round(budget["ciede2000_p99"], 4),
        "region_pixels": int(mask.sum()),
        "changed_pixels": int(changed.sum()),
        "changed_outside_regions": int((changed & ~mask).sum()),
        "changed_outside_parsed_classes": int((changed & ~region_mask(label_map, classes)).sum()),
        "mask_erosion_px": erode_px,
        "budget": {"min_psnr": s.min_psnr, "min_ssim": s.min_ssim, "max_change": s.max_change,
                   "max_ciede2000_mean": s.max_ciede2000_mean, "max_ciede2000_p99": s.max_ciede2000_p99},
        # the starting (invisible) budget held on the result, or how far it had to grow (escalate_to)
        "invisible_budget_met": bool(attack.within_budget(result.image, 1.0)),
        "budget_level_used": round(attack.level_needed(budget), 3),
        "working_scale": round(attack.work_scale, 4),
        "margin": s.margin if s.margin is not None else {r.name: wanted_margin(r) for r in attacked},
        "steps": result.steps,
        "stopped": result.stopped,
    }
    report = build_report(goal=goal, mode="photo", attacked=attacked, transfer=transfer, unavailable=unavailable,
                          verified=verified, unattacked=unattacked, original=rgb, image=result.image,
                          seconds=time.perf_counter() - start, extra=extra)
    return ConcealResult(result.image, rgb, report, mask, label_map, result.history)


# ---------------------------------------------------------------------------------------------
# Generator modes


def _generator_mode(mode, photo, target, goal, regions, attacked, transfer, unavailable, settings, progress,
                    also=(), pipeline=None, checkpoint: str | None = None) -> ConcealResult:
    from idface.conceal.generator_modes import GeneratorAttack, frame_embedding, verify_frame
    from idface.conceal.regions import parse_regions, region_names
    from idface.faces import prepare_face
    from idface.identity.registry import get_recognizer, recognizer_status

    start = time.perf_counter()
    if pipeline is None:
        pipeline = load_pipeline(checkpoint)
    token_rec_name = pipeline.config.identity_recognizer
    status = recognizer_status().get(token_rec_name, f"unknown recognizer {token_rec_name}")
    if status != "available":
        raise UnavailableError(f"this checkpoint's identity token needs {token_rec_name} embeddings: {status}")
    token_rec = get_recognizer(token_rec_name)
    face_a = prepare_face(photo)
    face_b = None if target is None else prepare_face(target)
    faces_also = [prepare_face(p) for p in also]
    if mode == "swap" and face_b is None:
        raise InputError("swap mode puts the target's identity into the token: give a target photo")

    references = {}
    for rec in attacked + transfer:
        references[rec.name] = Reference(frame_embedding(rec, face_a.image),
                                         None if face_b is None or goal == DODGE else frame_embedding(rec, face_b.image),
                                         [frame_embedding(rec, f.image) for f in faces_also])
    e_a_token = frame_embedding(token_rec, face_a.image)
    gen = GeneratorAttack(pipeline, face_a.image, face_a.label_map, e_a_token)
    margin = settings.margin
    margin_of = lambda rec: wanted_margin(rec, margin)  # noqa: E731
    classes: tuple[int, ...] = ()
    extra: dict[str, Any] = {
        "checkpoint": pipeline.source.describe() if getattr(pipeline, "source", None) else "in memory",
        "face": face_a.message,
        "scored_on": "generator frame (recognizer.embed_frame), as the app's identity bars",
        "identity_token_recognizer": token_rec_name,
    }
    if mode == "swap":
        unattacked_img = gen.unattacked()
        image = gen.generate(frame_embedding(token_rec, face_b.image))
        steps, stopped, history = 1, "one pass", []
    else:
        classes = parse_regions(regions) if regions else ()
        s = settings
        result = gen.optimise_token(attacked, references, goal, classes, s, progress)
        unattacked_img, image = result.unattacked, result.image
        steps, stopped, history = result.steps, result.stopped, result.history
        extra["budget"] = {"min_psnr": s.min_psnr, "min_ssim": s.min_ssim}
        extra["optimised_class_codes"] = region_names(classes)
    everyone = attacked + transfer
    verified = verify_frame(image, everyone, references, goal, margin_of)
    unattacked = verify_frame(unattacked_img, everyone, references, goal, margin_of)
    extra.update({"steps": steps, "stopped": stopped,
                  "margin": margin if margin is not None else {r.name: wanted_margin(r) for r in attacked}})
    report = build_report(goal=goal, mode=mode, attacked=attacked, transfer=transfer, unavailable=unavailable,
                          verified=verified, unattacked=unattacked, original=unattacked_img, image=image,
                          seconds=time.perf_counter() - start, extra=extra)
    return ConcealResult(image, unattacked_img, report, None, None, history)


def load_pipeline(checkpoint: str | None = None):
    """The generator pipeline, or UnavailableError saying how to get a checkpoint."""
    from idface.errors import WeightsNotFoundError
    from idface.pipeline import IdFacePipeline

    try:
        return IdFacePipeline.from_pretrained(checkpoint)
    except WeightsNotFoundError as err:
        raise UnavailableError(
            f"token and swap modes need a generator checkpoint ({err}); photo mode works without one"
        ) from None


# ---------------------------------------------------------------------------------------------


def mode_settings(mode: str, settings: PhotoAttackSettings | TokenAttackSettings | dict | None = None):
    """The typed settings of a mode: PhotoAttackSettings (photo) or TokenAttackSettings (token,
    swap). A dict gives some of the fields (an unknown field is an InputError)."""
    cls = PhotoAttackSettings if mode == "photo" else TokenAttackSettings
    if settings is None:
        return cls()
    if isinstance(settings, cls):
        return settings
    if isinstance(settings, dict):
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"{mode} mode has no setting {', '.join(unknown)} (see {cls.__name__})")
        return cls(**settings)
    raise InputError(f"{mode} mode takes {cls.__name__} settings, not {type(settings).__name__}")


def conceal(photo, target=None, goal: str = IMPERSONATE, mode: str = "photo", regions=None, attack=None, *,
            settings: PhotoAttackSettings | TokenAttackSettings | dict | None = None, pipeline=None,
            checkpoint: str | None = None, progress: Callable[[int, dict], None] | None = None,
            also=None, device: str = "cpu") -> ConcealResult:
    """Impersonate (recognizers read `target`) or dodge (recognizers no longer read `photo`).

    photo, target: paths, bytes, PIL images or RGB arrays. regions: class names / groups
    (idface.conceal.regions). attack: recognizer names (default: all available). settings:
    PhotoAttackSettings (photo mode) or TokenAttackSettings (token and swap modes), or a dict of
    some of their fields. progress(step, record) is called after each optimisation step.
    also: dodging only, other photos of A that recognizers should no longer match either.
    Dodging has no B: its verdicts never compare with `target` (swap mode still takes its identity).
    """
    goal = check_goal(goal, target is not None)
    also = list(also or [])
    if goal != DODGE and also:
        raise InputError("other photos of A (also) apply to dodging only")
    mode = (mode or "photo").strip().lower()
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}; choose photo, token or swap")
    settings = mode_settings(mode, settings)
    attacked, transfer, unavailable = select_recognizers(attack, device)
    if mode == "photo":
        return _photo_mode(photo, target, goal, regions, attacked, transfer, unavailable, settings, progress,
                           also=also)
    return _generator_mode(mode, photo, target, goal, regions, attacked, transfer, unavailable, settings, progress,
                           also=also, pipeline=pipeline, checkpoint=checkpoint)


__all__ = ["conceal", "ConcealResult", "MODES", "GENERATOR_MODES", "IMPERSONATE", "DODGE", "select_recognizers",
           "load_pipeline", "mode_settings", "PhotoAttackSettings", "TokenAttackSettings"]
