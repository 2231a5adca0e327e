"""Concealment building blocks: JPEG model vs libjpeg, metrics, regions, goal rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from idface import metrics, weights
from idface.conceal import goals, regions, transforms
from idface.conceal.api import distortion
from idface.errors import InputError
from idface.images import load_image
from idface.labels import CLASS_INDEX
from idface.tensors import to_uint8

from conceal_reference import reference_psnr, reference_recompress, reference_ssim


@pytest.fixture(scope="module")
def crop(faces_dir) -> np.ndarray:
    return load_image(faces_dir / "astronaut.png")[40:243, 100:401]  # odd sizes on purpose


@pytest.mark.parametrize("quality", [60, 75, 95])
def test_jpeg_model_is_close_to_libjpeg(crop, quality):
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255
    approx = to_uint8(transforms.jpeg_approx(x, quality)[0])
    real = transforms.real_jpeg(crop, quality)
    # the model is much closer to libjpeg than libjpeg is to the input
    assert reference_psnr(approx, real) > 40
    assert reference_psnr(approx, real) > reference_psnr(crop, real) + 5


def test_straight_through_jpeg_is_real_forward_with_gradient(crop):
    x = (torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255).requires_grad_(True)
    y = transforms.jpeg_straight_through(x, 75)
    assert np.array_equal(to_uint8(y[0]), transforms.real_jpeg(crop, 75))
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with torch.no_grad():                    # no gradient wanted: the same real output
        assert np.array_equal(to_uint8(transforms.jpeg_straight_through(x, 75)[0]), transforms.real_jpeg(crop, 75))


def test_recompress_halves_and_matches_pillow(faces_dir):
    rgb = load_image(faces_dir / "astronaut.png")
    small = transforms.recompress(rgb)
    assert small.shape == (256, 256, 3)
    assert reference_psnr(small, reference_recompress(rgb)) > 40


def test_recompressed_two_ways_and_the_worse_verdict_counts(faces_dir):
    """Box-filter re-compression is Pillow's own (the benchmark's judge uses it); area averaging rounds
    differently; a verdict after re-compression is the worse of the two."""
    rgb = load_image(faces_dir / "grace_hopper.jpg")
    area, box = transforms.recompressions(rgb)
    assert np.array_equal(box, reference_recompress(rgb))
    assert area.shape == box.shape and not np.array_equal(area, box)
    assert np.abs(transforms.resize_area(rgb, 0.5).astype(int) - transforms.resize_box(rgb, 0.5).astype(int)).max() <= 1
    held, just = {"goal_margin": 0.05, "success": True}, {"goal_margin": 0.01, "success": False}
    assert goals.worse(None, held) is held
    assert goals.worse(held, just) is just and goals.worse(just, held) is just


def test_psnr_and_ssim_agree_with_independent_code(crop, rng):
    noisy = np.clip(crop.astype(int) + rng.integers(-6, 7, crop.shape), 0, 255).astype(np.uint8)
    assert metrics.psnr(crop, noisy) == pytest.approx(reference_psnr(crop, noisy), abs=1e-9)
    assert metrics.ssim_luma(crop, noisy) == pytest.approx(reference_ssim(crop, noisy), abs=2e-3)
    assert metrics.psnr(crop, crop) == float("inf") and metrics.ssim_luma(crop, crop) == pytest.approx(1.0)
    t = lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    assert float(metrics.ssim_luma_torch(t(crop), t(noisy))[0]) == pytest.approx(metrics.ssim_luma(crop, noisy), abs=1e-4)
    # 30 dB budget <-> mean squared error
    assert 10 * np.log10(255 ** 2 / metrics.mse_for_psnr(30.0)) == pytest.approx(30.0)


def test_lpips_is_reported_unavailable_with_a_reason_or_computed(crop):
    d = distortion(crop, crop)
    if weights.lpips_status() == "available":
        assert d["lpips"] == pytest.approx(0.0, abs=1e-4)
    else:
        assert d["lpips"] == "unavailable" and d["lpips_note"]


def test_region_mask_erodes_only_the_outer_border():
    label = np.zeros((40, 40), np.uint8)
    label[10:30, 10:30] = CLASS_INDEX["skin"]
    label[18:22, 12:16] = CLASS_INDEX["l_eye"]          # touches no outer border after erosion
    classes = regions.parse_regions("skin,eyes")
    full = regions.region_mask(label, classes)
    eroded = regions.region_mask(label, classes, 2)
    assert full.sum() == 400 and eroded.sum() == 16 * 16 and not (eroded & ~full).any()
    assert eroded[18:22, 12:16].all()                     # the eye (inside the union) stays
    assert regions.erosion_pixels(600, 0.015) == 9 and regions.erosion_pixels(20, 0.015) == 1
    assert regions.erosion_pixels(600, 0) == 0


def test_region_names_and_groups():
    assert regions.parse_regions("skin,hair") == (CLASS_INDEX["skin"], CLASS_INDEX["hair"])
    face = regions.parse_regions("face")
    assert CLASS_INDEX["nose"] in face and CLASS_INDEX["hair"] not in face
    # the eyes as the "eyes" group has them: with the glasses worn over them (a face with glasses
    # otherwise loses the whole eye band to a hole in the mask)
    assert set(regions.parse_regions("eyes")) <= set(face) and CLASS_INDEX["eye_g"] in face
    assert CLASS_INDEX["hat"] not in face and CLASS_INDEX["l_ear"] not in face
    assert regions.parse_regions(None) == face
    with pytest.raises(InputError, match="unknown region"):
        regions.parse_regions("skin,wings")
    with pytest.raises(InputError, match="background"):
        regions.parse_regions("background")


class _Dist:
    threshold, higher_is_more_similar, metric = 0.6, False, "euclidean"


class _Cos:
    threshold, higher_is_more_similar, metric = 0.3, True, "cosine"


def test_goal_margins_follow_each_recognizers_rule():
    assert goals.goal_margin(_Dist, "impersonate", 0.9, 0.5) == pytest.approx(0.1)   # close to B: reached
    assert goals.goal_margin(_Dist, "dodge", 0.5, None) == pytest.approx(-0.1)      # still A: not reached
    assert goals.goal_margin(_Cos, "impersonate", 0.1, 0.5) == pytest.approx(0.2)
    assert goals.goal_margin(_Cos, "dodge", 0.5, None) == pytest.approx(-0.2)
    # impersonation also needs A no longer read: close to B but still close to A is not reached
    assert goals.goal_margin(_Dist, "impersonate", 0.55, 0.5) == pytest.approx(-0.05)
    assert goals.goal_margin(_Cos, "impersonate", 0.4, 0.5) == pytest.approx(-0.1)
    # dodging with other photos of A: the closest of them counts
    assert goals.goal_margin(_Dist, "dodge", 0.8, None, [0.7, 0.62]) == pytest.approx(0.02)
    t = torch.tensor([0.55, 0.9])
    assert torch.allclose(goals.goal_margin(_Dist, "impersonate", t, torch.tensor([0.5, 0.5])),
                          torch.tensor([-0.05, 0.1]))
    with pytest.raises(InputError, match="target"):
        goals.check_goal("impersonate", has_target=False)
    with pytest.raises(InputError, match="unknown goal"):
        goals.check_goal("vanish", has_target=True)


class _Scored(_Dist):
    @staticmethod
    def score(a, b):
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))

    @staticmethod
    def is_same(d):
        return d < 0.6


def test_verdicts_say_which_condition_held():
    ref = goals.Reference(np.zeros(2), np.array([1.0, 0.0]))
    reads_both = goals.read_verdict(_Scored, np.array([0.5, 0.0]), ref, "impersonate", 0.03)
    assert reads_both["conditions"]["reads_target"]["held"] and not reads_both["conditions"]["no_longer_reads_source"]["held"]
    assert not reads_both["success"] and reads_both["same_as_source"] and reads_both["same_as_target"]
    assert goals.verdict_words(reads_both) == "reads B, still reads A: goal not reached"
    only_b = goals.read_verdict(_Scored, np.array([0.9, 0.0]), ref, "impersonate", 0.03)
    assert only_b["success"] and goals.verdict_words(only_b) == "reads B, no longer reads A: goal reached"
    within = goals.read_verdict(_Scored, np.array([0.61, 0.0]), ref, "impersonate", 0.03)
    assert within["past_threshold"] and not within["success"] and "only just" in goals.verdict_words(within)
    also = goals.Reference(np.zeros(2), None, [np.array([0.0, 1.0])])
    dodge = goals.read_verdict(_Scored, np.array([0.0, 0.7]), also, "dodge", 0.03)
    assert dodge["distance_to_also"] == [0.3] and dodge["same_as_also"] == [True]
    assert not dodge["success"] and dodge["conditions"]["no_longer_reads_source"]["held"]
    assert goals.verdict_words(dodge) == "no longer reads A, still reads another photo of A: goal not reached"
    assert goals.plural(1, "step") == "1 step" and goals.plural(0, "step") == "0 steps"


def test_recognizer_selection_names_what_cannot_be_attacked():
    from idface.conceal import select_recognizers
    from idface.errors import UnavailableError
    from idface.identity.registry import recognizer_status

    status = recognizer_status()
    attacked, transfer, unavailable = select_recognizers(None)
    assert sorted(r.name for r in attacked) == sorted(n for n, s in status.items() if s == "available")
    assert not transfer and set(unavailable) == {n for n, s in status.items() if s != "available"}
    with pytest.raises(InputError, match="unknown recognizer"):
        select_recognizers("facenet")
    for name, reason in unavailable.items():
        with pytest.raises(UnavailableError, match=name):
            select_recognizers([name])
    if status["dlib-resnet"] == "available" and status["arcface"] == "available":
        attacked, transfer, _ = select_recognizers("dlib-resnet")
        assert [r.name for r in attacked] == ["dlib-resnet"] and [r.name for r in transfer] == ["arcface"]


def test_settings_are_typed_and_unknown_fields_are_refused():
    from idface.conceal import PhotoAttackSettings, TokenAttackSettings, mode_settings

    assert mode_settings("photo", {"min_psnr": 35.0}) == PhotoAttackSettings(min_psnr=35.0)
    assert isinstance(mode_settings("swap"), TokenAttackSettings)
    typed = TokenAttackSettings(steps=3)
    assert mode_settings("token", typed) is typed
    with pytest.raises(InputError, match="max_chnage"):
        mode_settings("photo", {"max_chnage": 3})
    with pytest.raises(InputError, match="PhotoAttackSettings"):
        mode_settings("photo", typed)
    # choices are checked when the settings are made, before any photo is decoded
    for name, value in (("gradient", "photo"), ("forward", "exact"), ("optimiser", "sgd")):
        with pytest.raises(InputError, match=f"unknown {name} '{value}'"):
            mode_settings("photo", {name: value})


def _verdicts(margin: float) -> dict:
    v = {"success": margin > 0, "success_with_margin": margin >= 0.03, "goal_margin": margin}
    return {"rec": {"raw": dict(v), "recompressed": dict(v)}}


def test_the_shared_search_keeps_the_best_verified_state_and_stops_at_the_goal():
    from idface.conceal.search import search

    margins = iter([-0.2, -0.1, 0.01, 0.05, 0.9])
    images = [np.full((2, 2, 3), i, np.uint8) for i in range(5)]
    shown = iter(images)
    out = search(start_image=np.zeros((2, 2, 3), np.uint8), start_verified=_verdicts(-0.5), steps=10,
                 max_seconds=None, robust=True, step=lambda i: ({"step": i}, True),
                 candidate=lambda: next(shown), verify=lambda image: _verdicts(next(margins)))
    assert out.stopped == "goal reached" and out.steps == 4 and out.image[0, 0, 0] == 3
    assert [r["step"] for r in out.history] == [1, 2, 3, 4]
    # over budget (no candidate): nothing verified, the best stays the start, the step limit ends it
    out = search(start_image=images[0], start_verified=_verdicts(-0.5), steps=3, max_seconds=None, robust=True,
                 step=lambda i: ({"step": i}, True), candidate=lambda: None, verify=lambda image: 1 / 0)
    assert out.stopped == "step limit" and out.image is images[0] and all(r["over_budget"] for r in out.history)


def test_altered_photos_and_synthetic_faces_are_marked_apart(tmp_path):
    from idface.outputs import read_png_metadata, save_synthetic_png
    from idface.ui.conceal_panel import download_label

    img = np.full((8, 8, 3), 100, np.uint8)
    altered = read_png_metadata(save_synthetic_png(img, tmp_path / "a.png", "none", {}, altered=True))
    synthetic = read_png_metadata(save_synthetic_png(img, tmp_path / "s.png", "ckpt", {}))
    assert altered["idface:altered_photo"] == "true" and altered["idface:synthetic"] == "false"
    assert "not the original photograph" in altered["Description"] and "synthetic" not in altered["Description"].lower()
    assert synthetic["idface:synthetic"] == "true" and synthetic["idface:altered_photo"] == "false"
    assert "altered photo" in download_label("photo") and "synthetic" in download_label("swap")


def test_texture_allowance_gives_busy_areas_more_room():
    from idface.conceal.photo import texture_allowance

    rng = np.random.default_rng(0)
    img = torch.full((1, 3, 40, 80), 0.6)
    img[..., 40:] += torch.from_numpy(rng.normal(0, 0.1, (1, 3, 40, 40))).float()   # busy right half
    mask = torch.ones(1, 1, 40, 80)
    allow = texture_allowance(img, mask)
    assert allow.shape == (1, 1, 40, 80)
    assert float(allow[..., 5:35, 5:30].max()) <= 0.25 + 1e-6 and float(allow[..., 5:35, 50:75].mean()) > 1.0


def test_normalised_gradient_keeps_the_gradients_proportions():
    from idface.optim import Adam, NormalisedGradient

    # a loss that depends 10x more on the first coordinate: the normalised gradient moves it 10x
    # further (Adam would move both by about lr); each step moves lr x (1 - momentum) in RMS at first
    weights = torch.tensor([10.0, 1.0, 0.0])
    p = torch.zeros(3, requires_grad=True)
    opt = NormalisedGradient([p], lr=0.5, momentum=0.8)
    (p * weights).sum().backward()
    opt.step()
    rms = float(torch.sqrt((weights ** 2).mean()))
    torch.testing.assert_close(p.detach(), -0.5 * 0.2 * weights / rms)
    assert float(p[2]) == 0.0
    q = torch.zeros(3, requires_grad=True)
    adam = Adam([q], lr=0.5)
    (q * weights).sum().backward()
    adam.step()
    assert float(q[0]) == pytest.approx(float(q[1]), rel=1e-3)     # Adam: the same step for both
    # momentum: a second, identical gradient adds 0.8 x the first direction plus the new one
    p.grad = None
    (p * weights).sum().backward()
    opt.step()
    torch.testing.assert_close(p.detach(), -0.5 * (0.2 + 0.8 * 0.2 + 0.2) * weights / rms)


def test_budget_holds_the_p99_limit_and_psnr_floor_until_their_level():
    from idface.conceal.photo import PhotoAttack, PhotoAttackSettings

    attack = object.__new__(PhotoAttack)     # only the budget arithmetic, no photo needed
    attack.s = PhotoAttackSettings(min_psnr=40.0, max_ciede2000_mean=1.0, max_ciede2000_p99=3.0,
                                   p99_hold=2.5, psnr_hold=2.5)
    for level in (1.0, 2.0, 2.5):
        assert attack.p99_level(level) == 1.0 and attack.psnr_floor(level) == 40.0
    assert attack.p99_level(4.0) == pytest.approx(1.6)
    assert attack.psnr_floor(4.0) == pytest.approx(40.0 - 20 * np.log10(1.6))
    # the level a result needed: the mean alone grows freely; a p99 or PSNR past its limit needs the hold passed
    assert attack.level_needed({"psnr": 41.0, "ciede2000_mean": 1.4, "ciede2000_p99": 2.9}) == pytest.approx(1.4)
    assert attack.level_needed({"psnr": 41.0, "ciede2000_mean": 0.9, "ciede2000_p99": 3.3}) == pytest.approx(2.75)
    assert attack.level_needed({"psnr": 39.0, "ciede2000_mean": 0.9, "ciede2000_p99": 2.0}) == pytest.approx(
        2.5 * 10 ** (1 / 20))
    # how far over its limit the furthest number is (the candidate is scaled by it to fit)
    assert attack.overshoot({"psnr": 41.0, "ciede2000_mean": 1.2, "ciede2000_p99": 2.4}, 1.0) == pytest.approx(1.2)
    assert attack.overshoot({"psnr": 38.0, "ciede2000_mean": 0.5, "ciede2000_p99": 2.4}, 1.0) == pytest.approx(
        10 ** (2 / 20))
    assert attack.overshoot({"psnr": 41.0, "ciede2000_mean": 0.5, "ciede2000_p99": 3.3}, 2.0) == pytest.approx(1.1)
    assert attack.overshoot({"psnr": 41.0, "ciede2000_mean": 0.9, "ciede2000_p99": 2.7}, 1.0) < 1
    attack.s = PhotoAttackSettings(p99_hold=1.0, psnr_hold=1.0)   # the limits grow with the level at once
    assert attack.p99_level(2.0) == 2.0 and attack.psnr_floor(2.0) == pytest.approx(40.0 - 20 * np.log10(2.0))


def test_shrink_first_scales_a_success_just_over_budget_until_it_fits():
    """PhotoAttack.shrink tries the least change first: the successful perturbation itself, scaled until
    it fits the starting budget (a success 3 % over it keeps its shape), before any projection. Only the
    control flow is exercised here: the "photo" is the perturbation itself, its mean CIEDE2000 that of
    |u|, and the recognizers accept any change of mean at least 0.95 (a projection that takes 10 % off,
    as the soft threshold does, then fails). The budget arithmetic (_fit_budget, overshoot) is the real one."""
    from idface.conceal.photo import PhotoAttack, PhotoAttackSettings

    attack = object.__new__(PhotoAttack)
    attack.s = PhotoAttackSettings(shrink_tries=4)
    attack.level = 2.6
    attack.compose = lambda u: u.clone()
    attack.budget_numbers = lambda img: {"psnr": 45.0, "ssim_luma": 1.0, "ciede2000_mean": float(img.abs().mean()),
                                         "ciede2000_p99": 1.0}
    projected = []
    attack._limit = lambda u, level: (projected.append(level), u.mul_(0.9))
    verdict = lambda ok: {"raw": {"success_with_margin": ok}, "recompressed": {"success_with_margin": ok}}  # noqa: E731
    needs = {"mean": 0.95}
    attack.verify = lambda img: {"dlib-resnet": verdict(float(img.abs().mean()) >= needs["mean"])}
    u = torch.full((1, 3, 4, 4), 1.03)
    image, verified, level, tries = attack.shrink(u, attack.compose(u), attack.s.shrink_tries)
    assert level == 1.0 and tries == 1 and projected == []            # scaled, not projected, and it held
    assert 0.95 <= float(image.mean()) <= 1.0
    assert attack.level == 1.0
    # a success that needs more than the starting budget: scaled and projected onto it, both fail; then
    # projections down from the level reached, each smaller level kept while it holds
    needs["mean"], attack.level = 1.2, 2.6
    u = torch.full((1, 3, 4, 4), 1.5)
    image, verified, level, tries = attack.shrink(u, attack.compose(u), 4)
    assert projected == pytest.approx([1.0, 2.6 / 1.15, 2.6 / 1.15 ** 2]) and tries == 4
    assert level == pytest.approx(2.6 / 1.15 ** 2) and attack.level == level
    assert float(image.mean()) == pytest.approx(1.35)


def test_shrink_clips_the_largest_changes_when_the_p99_alone_is_over():
    """A success over the starting budget by its 99th percentile alone (mean and PSNR within) is
    first clipped at its largest changes, the rest kept as they are: here one pixel of 16 carries
    the p99, and the recognizers (stub: the summed change) accept the clipped change but not the
    whole one scaled down to fit. The "photo" is the perturbation itself, as in the test above."""
    from idface.conceal.photo import PhotoAttack, PhotoAttackSettings

    attack = object.__new__(PhotoAttack)
    attack.s = PhotoAttackSettings(shrink_tries=4)
    attack.level = 2.6
    attack.weight = torch.ones(1, 1, 4, 4)
    attack.compose = lambda u: u.clone()
    norms = lambda img: img.norm(dim=1)[0]  # noqa: E731
    attack.budget_numbers = lambda img: {"psnr": 45.0, "ssim_luma": 1.0, "ciede2000_mean": float(norms(img).mean()),
                                         "ciede2000_p99": float(norms(img).max())}
    projected = []
    attack._limit = lambda u, level: (projected.append(level), u.mul_(0.9))
    verdict = lambda ok: {"raw": {"success_with_margin": ok}, "recompressed": {"success_with_margin": ok}}  # noqa: E731
    attack.verify = lambda img: {"dlib-resnet": verdict(float(norms(img).sum()) >= 10.4)}
    u = torch.zeros(1, 3, 4, 4)
    u[0, 0] = 0.5
    u[0, 0, 2, 1] = 3.3                        # p99 3.3 over its 3; mean 0.68 within
    image, verified, level, tries = attack.shrink(u, attack.compose(u), 4)
    assert level == 1.0 and tries == 1 and projected == []
    out = norms(image)
    assert float(out[2, 1]) == pytest.approx(3.0 * 0.99) and float(out.max()) <= 3.0
    assert torch.equal(out[out < 1], torch.full((15,), 0.5))        # the rest as it was
    # without the clip the scaled try alone loses the verdict, and the projections follow
    attack.s = PhotoAttackSettings(shrink_tries=4, shrink_clip_p99=False)
    attack.level = 2.6
    assert attack.shrink(u, attack.compose(u), 4) is None


def test_the_mean_limit_can_be_held_like_the_others():
    from idface.conceal.photo import PhotoAttack, PhotoAttackSettings

    attack = object.__new__(PhotoAttack)     # only the budget arithmetic, no photo needed
    attack.s = PhotoAttackSettings(max_ciede2000_mean=1.0, mean_hold=2.0, p99_hold=1.0, psnr_hold=1.0)
    assert attack.mean_level(1.5) == 1.0 and attack.mean_level(3.0) == pytest.approx(1.5)
    # a mean past its limit now needs the hold passed, as p99 and PSNR do
    assert attack.level_needed({"psnr": 41.0, "ciede2000_mean": 1.2, "ciede2000_p99": 2.0}) == pytest.approx(2.4)
    attack.s = PhotoAttackSettings()         # the default: the mean grows with the level from the start
    assert attack.mean_level(1.5) == 1.5


def test_verification_keeps_the_alignments_it_found_in_the_photos_pixels(faces_dir):
    """verify_photo hands back the detections it used (raw and re-compressed: half size); the
    alignment from the half-size detection, mapped to the photo's pixels, is the one from the
    photo itself within a pixel or two (the attack aligns its samples with them:
    PhotoAttack.track_alignment)."""
    from types import SimpleNamespace

    from idface.conceal.photo import alignment_matrix, verify_photo
    from idface.faces.detect import detect_faces
    from idface.identity.dlib_recognizer import DlibRecognizer

    photo = load_image(faces_dir / "obama.jpg")
    rec = SimpleNamespace(template=DlibRecognizer.template, input_size=DlibRecognizer.input_size)
    detections: dict = {}
    verify_photo(photo, [], "dodge", lambda r: 0.0, detections)
    assert set(detections) == {"raw", "recompressed"}
    raw, small = detections["raw"], detections["recompressed"]
    assert small.image_size[0] == round(photo.shape[0] / 2)
    full = alignment_matrix(rec, detect_faces(photo).chosen)
    np.testing.assert_allclose(alignment_matrix(rec, raw.chosen), full)
    halved = alignment_matrix(rec, small.chosen, small.image_size[0] / photo.shape[0])
    corners = np.array([[0, 0, 1], [150, 0, 1], [0, 150, 1], [150, 150, 1]], float)
    inverse = lambda m: np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]   # noqa: E731  template -> photo
    # where the chip's corners land in the photo: a few photo pixels apart at most (face ~300 px)
    assert np.abs(corners @ inverse(halved).T - corners @ inverse(full).T).max() < 6.0


def test_texture_allowance_of_the_detail_alone_counts_shading_as_plain():
    from idface.conceal.photo import texture_allowance

    rng = np.random.default_rng(1)
    ramp = torch.linspace(0.2, 0.8, 80).view(1, 1, 1, 80).expand(1, 3, 40, 80).clone()   # light falling over a cheek
    img = ramp.clone()
    img[..., 40:] += torch.from_numpy(rng.normal(0, 0.03, (1, 3, 40, 40))).float()       # detail on the right half
    mask = torch.ones(1, 1, 40, 80)
    plain = texture_allowance(img, mask, low=0.0, high=1e6)
    detail = texture_allowance(img, mask, low=0.0, high=1e6, detail_sigma=3.0)
    left, right = (..., slice(8, 32), slice(8, 32)), (..., slice(8, 32), slice(48, 72))
    # the slope alone has contrast as plain local contrast, almost none as detail
    assert float(plain[left].mean()) > 0.3 and float(detail[left].mean()) < 0.1 * float(detail[right].mean())


def test_ssim_map_averages_to_the_ssim_and_sees_structure_more_than_shading(crop):
    from idface.metrics import ssim_luma, ssim_luma_map

    base = np.asarray(crop, np.uint8)
    h, w = base.shape[:2]
    stripes = np.where((np.arange(w) // 3) % 2 == 0, 4.0, -4.0)[None, :, None]        # fine streaks
    shading = np.linspace(-4.0, 4.0, w)[None, :, None]                                 # the same range, slowly
    streaked = np.clip(base + stripes, 0, 255).astype(np.uint8)
    shaded = np.clip(base + shading, 0, 255).astype(np.uint8)
    smap = ssim_luma_map(base, streaked)
    assert smap.shape == (h, w) and float(smap.mean()) == pytest.approx(ssim_luma(base, streaked), abs=1e-12)
    assert 1 - ssim_luma(base, streaked) > 5 * (1 - ssim_luma(base, shaded))
