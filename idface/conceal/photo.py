"""Photo mode: a perturbation of the photo itself, no generator needed.

Only pixels inside the chosen region mask change; every other pixel of the output is the input's
pixel, bit for bit. The perturbation lives in a window around the face (snapped to the 16-pixel
JPEG grid) and is optimised with Adam against the attacked recognizers through the same path a
recognizer takes on a shared photo:

    window + delta * mask                                       [1, 3, h, w] in [0, 1]
      -> resize by s in [0.5, 1] (antialiased)                  what sharing services do
      -> JPEG at quality 60..95 (real libjpeg forward,          idface.conceal.transforms
         differentiable approximation backward)
      -> the recognizer's alignment (the similarity transform   grid_sample, kept from detection,
         from the detected landmarks to its template),          jittered by a few pixels / degrees
      -> embedding                                              recognizer.embed_aligned

(expectation over transformations, `samples` draws per step). After each projection the perturbation
fits the budget: the whole photo's PSNR stays at or above `min_psnr` dB (an L2 ball), every pixel
moves at most `max_change` (of 255), pixels stay in range, and SSIM is held above `min_ssim` by a
hinge penalty and checked on the final uint8 image (scaled down if ever needed).

Every `check_every` steps the current uint8 result is verified the way a user would verify it:
detect, align and embed the whole photo (recognizer.embed_photo), raw and after the reporting
re-compression (JPEG 75 after a half-size resize). The run stops as soon as every attacked
recognizer gives the wanted verdict with the margin on both; otherwise the best verified state
is kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from idface.conceal.goals import Reference, goal_margin, read_verdict, wanted_margin
from idface.conceal.score import RECOMPRESSED_MIN_FACE, embed_photo_array
from idface.conceal.search import search
from idface.conceal.transforms import jpeg_straight_through, recompress
from idface.errors import IdfaceError, InputError
from idface.faces.align import apply_affine, estimate_transform, get_template, invert_affine
from idface.faces.detect import MIN_FACE_SIZE, detect_faces
from idface.metrics import LUMA, mse_for_psnr, psnr, ssim_luma, ssim_luma_torch

JPEG_GRID = 16  # MCU size with 4:2:0 chroma subsampling


@dataclass
class PhotoAttackSettings:
    min_psnr: float = 30.0           # dB, whole photo vs the original
    min_ssim: float = 0.95           # whole photo vs the original
    max_change: float = 24.0         # per pixel and channel, of 255
    steps: int = 300                 # at most
    max_seconds: float | None = 180.0
    lr: float = 0.01                 # Adam, [0, 1] pixel units
    samples: int = 2                 # transformations per step (expectation)
    check_every: int = 2             # steps between real verifications (once the loss says done)
    margin: float | None = None      # past the threshold, recognizer units (None: DEFAULT_MARGIN)
    overshoot: float = 0.08          # the loss keeps pushing this far past the margin
    scale_range: tuple[float, float] = (0.5, 1.0)
    jpeg_quality: tuple[int, int] = (60, 95)
    jpeg_probability: float = 0.8
    jitter_pixels: float = 2.0       # chip pixels of landmark jitter
    jitter_degrees: float = 2.0
    jitter_scale: float = 0.02
    robust: bool = True              # also require success after re-compression to stop
    mask_erosion: float = 0.015      # the region mask shrinks by this fraction of the face size (no spill)
    # shaped as people see; off by default until verified against the whole suite (measured on 6
    # pairs with smooth_sigma=1.0, chroma=0.3, texture_aware=True: 6/6, PSNR 42.5-45.3 dB, CIEDE2000
    # mean <= 2.0 against 5.7 unshaped):
    smooth_sigma: float = 0.0        # px: the perturbation is blurred after every step (low frequency)
    chroma: float = 1.0              # share of colour change kept (the rest moves R, G, B together)
    texture_aware: bool = False      # per-pixel limit follows the photo's local contrast
    seed: int = 0


@dataclass
class Target:
    """One attacked recognizer: its alignment in the photo and its reference embeddings."""

    recognizer: object
    matrix: np.ndarray               # [2, 3] photo pixels -> template pixels
    reference: Reference
    source_t: torch.Tensor           # [D]
    target_t: torch.Tensor | None    # [D]
    also_t: list = field(default_factory=list)   # [D] each: other photos of A (dodging)


@dataclass
class PhotoAttackResult:
    image: np.ndarray                # [H, W, 3] uint8, the attacked photo
    steps: int
    seconds: float
    stopped: str                     # "goal reached", "step limit", "time limit"
    verified: dict = field(default_factory=dict)   # recognizer -> {"raw": verdict, "recompressed": verdict}
    history: list = field(default_factory=list)


def _window(mask: np.ndarray, corners: list[np.ndarray], shape: tuple[int, int], pad: int) -> tuple[int, int, int, int]:
    """Smallest box holding the mask and every chip footprint, padded, on the JPEG grid."""
    ys, xs = np.nonzero(mask)
    pts = [np.stack([xs, ys], 1).astype(np.float64)] + corners
    allp = np.concatenate(pts, 0)
    h, w = shape
    x0 = max(0, int(math.floor(allp[:, 0].min())) - pad)
    y0 = max(0, int(math.floor(allp[:, 1].min())) - pad)
    x1 = min(w, int(math.ceil(allp[:, 0].max())) + pad + 1)
    y1 = min(h, int(math.ceil(allp[:, 1].max())) + pad + 1)
    x0, y0 = x0 - x0 % JPEG_GRID, y0 - y0 % JPEG_GRID
    return y0, y1, x0, x1


def _jitter_matrix(rng: np.random.Generator, size: int, s: PhotoAttackSettings) -> np.ndarray:
    """A small random similarity around the chip centre [3, 3] (chip pixels -> chip pixels)."""
    angle = np.deg2rad(rng.uniform(-s.jitter_degrees, s.jitter_degrees))
    scale = 1 + rng.uniform(-s.jitter_scale, s.jitter_scale)
    shift = rng.uniform(-s.jitter_pixels, s.jitter_pixels, size=2)
    c = (size - 1) / 2
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = np.array([c, c]) - rot @ np.array([c, c]) + shift
    return m


def _chip(x: torch.Tensor, photo_to_chip: np.ndarray, size: int) -> torch.Tensor:
    """x [1, 3, h, w] (pixels of some image) -> chip [1, 3, S, S] through photo_to_chip [3, 3]
    (that image's pixels -> chip pixels), with antialiasing when the chip shrinks the image."""
    scale = float(np.sqrt(abs(np.linalg.det(photo_to_chip[:2, :2]))))
    if scale < 0.75:
        h, w = x.shape[-2:]
        nh, nw = max(size, int(round(h * scale / 0.8))), max(size, int(round(w * scale / 0.8)))
        fy, fx = nh / h, nw / w
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        # small pixel -> original pixel: p = (q + 0.5) / f - 0.5
        up = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        photo_to_chip = photo_to_chip @ up
    h, w = x.shape[-2:]
    chip_to_img = np.linalg.inv(photo_to_chip)
    to_norm_in = np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])
    from_norm_out = np.linalg.inv(np.array([[2 / size, 0, 1 / size - 1], [0, 2 / size, 1 / size - 1], [0, 0, 1]]))
    theta = (to_norm_in @ chip_to_img @ from_norm_out)[:2]
    theta_t = torch.as_tensor(theta, dtype=x.dtype)[None]
    grid = F.affine_grid(theta_t, [1, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Adam:
    """Adam on one tensor (Kingma & Ba 2015). Written out because importing torch.optim pulls in
    torch._dynamo, which costs seconds on every first use in a fresh process."""

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        if self.param.grad is None:
            return
        b1, b2 = self.betas
        self.t += 1
        g = self.param.grad
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = self.m / (1 - b1 ** self.t)
        v_hat = self.v / (1 - b2 ** self.t)
        self.param.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W], reflect-padded."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def texture_allowance(window: torch.Tensor, mask: torch.Tensor, sigma: float = 2.0,
                      low: float = 0.25, high: float = 2.0) -> torch.Tensor:
    """[1, 3, h, w] in [0, 1] -> [1, 1, h, w]: local luminance contrast relative to the median
    inside the mask, clipped to [low, high]: more change may hide where the photo is busy (hair,
    beard, wrinkles), very little on smooth skin (contrast masking)."""
    luma = torch.as_tensor(LUMA, dtype=window.dtype).view(1, 3, 1, 1)
    y = (window * luma).sum(1, keepdim=True)
    mean = _blur(y, sigma)
    std = (_blur(y * y, sigma) - mean * mean).clamp_min(0).sqrt()
    inside = std[mask > 0]
    ref = float(inside.median()) if inside.numel() else float(std.median())
    return (std / max(ref, 1e-4)).clamp(low, high)


def _full3(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


class PhotoAttack:
    """Optimise a masked perturbation of one photo against a set of recognizers."""

    def __init__(self, photo: np.ndarray, face, mask: np.ndarray, targets: list[Target], goal: str,
                 settings: PhotoAttackSettings | None = None):
        self.photo = np.ascontiguousarray(photo, dtype=np.uint8)        # [H, W, 3]
        self.mask = np.asarray(mask, bool)                              # [H, W]
        if self.mask.shape != self.photo.shape[:2]:
            raise InputError(f"region mask {self.mask.shape} does not match the photo {self.photo.shape[:2]}")
        if not self.mask.any():
            raise InputError("the chosen regions cover no pixel of this face; choose other regions")
        self.face = face
        self.targets = targets
        self.goal = goal
        self.s = settings or PhotoAttackSettings()
        h, w = self.photo.shape[:2]
        corners = []
        for t in targets:
            size = t.recognizer.input_size
            quad = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
            corners.append(apply_affine(invert_affine(t.matrix), quad))
        pad = int(round(0.06 * max(face.size, 32)))
        self.box = _window(self.mask, corners, (h, w), pad)
        y0, y1, x0, x1 = self.box
        self.base = torch.from_numpy(self.photo[y0:y1, x0:x1].copy()).permute(2, 0, 1)[None].float() / 255.0
        self.mask_t = torch.from_numpy(self.mask[y0:y1, x0:x1].copy())[None, None].float()
        # per-pixel limit of the change [1, 1, h, w], in [0, 1] pixel units
        allow = texture_allowance(self.base, self.mask_t) if self.s.texture_aware else torch.ones_like(self.mask_t)
        self.limit_t = allow * (self.s.max_change / 255.0)
        self.total_values = h * w * 3
        self.total_pixels = h * w
        # photo pixel -> window pixel offset
        self.window_to_photo = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)

    # ---- budget ----
    def _project(self, delta: torch.Tensor) -> None:
        s = self.s
        with torch.no_grad():
            if s.smooth_sigma:
                delta.copy_(_blur(delta, s.smooth_sigma))
            if s.chroma is not None and s.chroma < 1:
                grey = delta.mean(1, keepdim=True)
                delta.copy_(grey + s.chroma * (delta - grey))
            delta.copy_(torch.maximum(torch.minimum(delta, self.limit_t), -self.limit_t))
            delta.copy_(torch.maximum(torch.minimum(delta, 1 - self.base), -self.base) * self.mask_t)
            limit = mse_for_psnr(s.min_psnr + 0.05) / 255.0 ** 2 * self.total_values   # sum of squares
            total = float((delta ** 2).sum())
            if total > limit:
                delta.mul_(math.sqrt(limit / total))

    def compose(self, delta: torch.Tensor) -> np.ndarray:
        """The full uint8 photo for a perturbation: outside the mask, the input's own bytes."""
        y0, y1, x0, x1 = self.box
        win = ((self.base + delta * self.mask_t)[0].clamp(0, 1) * 255).round().to(torch.uint8)
        win = win.permute(1, 2, 0).numpy()
        out = self.photo.copy()
        region = out[y0:y1, x0:x1]
        m = self.mask[y0:y1, x0:x1]
        region[m] = win[m]
        return out

    def within_budget(self, image: np.ndarray) -> bool:
        return psnr(self.photo, image) >= self.s.min_psnr and ssim_luma(self.photo, image) >= self.s.min_ssim

    def _fit_budget(self, delta: torch.Tensor) -> np.ndarray:
        """Compose, and shrink the perturbation until the uint8 image meets the budget."""
        image = self.compose(delta)
        shrink = delta.detach().clone()
        for _ in range(40):
            if self.within_budget(image):
                return image
            shrink.mul_(0.97)
            image = self.compose(shrink)
        return self.photo.copy()  # could not fit: return the original rather than break the budget

    def _whole_ssim(self, x: torch.Tensor) -> torch.Tensor:
        """SSIM of the whole photo from the window's (outside the window the SSIM map is 1)."""
        win = ssim_luma_torch(x, self.base)[0]
        h, w = x.shape[-2:]
        return 1 - (1 - win) * (h * w) / self.total_pixels

    # ---- one forward pass over sampled transformations ----
    def _margins(self, x: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        s = self.s
        chips: dict[str, list[torch.Tensor]] = {t.recognizer.name: [] for t in self.targets}
        h, w = x.shape[-2:]
        for _ in range(s.samples):
            scale = 1.0 if rng.random() < 0.25 else rng.uniform(*s.scale_range)
            xs = x
            if scale < 0.999:
                nh, nw = max(8, int(round(h * scale))), max(8, int(round(w * scale)))
                xs = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
            fy, fx = xs.shape[-2] / h, xs.shape[-1] / w
            if rng.random() < s.jpeg_probability:
                xs = jpeg_straight_through(xs, int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)))
            # resized window pixel -> photo pixel
            small_to_window = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
            small_to_photo = self.window_to_photo @ small_to_window
            for t in self.targets:
                size = t.recognizer.input_size
                m = _jitter_matrix(rng, size, s) @ _full3(t.matrix) @ small_to_photo
                chips[t.recognizer.name].append(_chip(xs, m, size))
        margins = {}
        for t in self.targets:
            rec = t.recognizer
            emb = rec.embed_aligned(torch.cat(chips[rec.name]))                  # [N, D]
            s_src = rec.score(emb, t.source_t[None])
            s_tgt = rec.score(emb, t.target_t[None]) if t.target_t is not None else None
            s_also = [rec.score(emb, a[None]) for a in t.also_t]
            margins[rec.name] = goal_margin(rec, self.goal, s_src, s_tgt, s_also)  # [N]
        return margins

    def margin(self, rec) -> float:
        """The margin past the threshold that this run asks of `rec` (settings or DEFAULT_MARGIN)."""
        return wanted_margin(rec, self.s.margin)

    def verify(self, image: np.ndarray) -> dict:
        """Real check of a uint8 photo: detect, align, embed; raw and re-compressed."""
        return verify_photo(image, self.targets, self.goal, self.margin)

    # ---- the loop (idface.conceal.search) ----
    def run(self, progress: Callable[[int, dict], None] | None = None,
            unattacked: dict | None = None) -> PhotoAttackResult:
        """Optimise. `unattacked`: verify() of the input photo, when the caller already has it."""
        s = self.s
        rng = np.random.default_rng(s.seed)
        torch.manual_seed(s.seed)
        start = time.perf_counter()
        delta = torch.zeros_like(self.base, requires_grad=True)
        optimiser = Adam(delta, lr=s.lr)
        if unattacked is None:
            unattacked = self.verify(self.photo)
        smallest_margin = min(self.margin(t.recognizer) for t in self.targets)

        def step(i: int) -> tuple[dict, bool]:
            x = self.base + delta * self.mask_t                                  # [1, 3, h, w] window
            margins = self._margins(x, rng)
            loss = x.new_zeros(())
            worst = math.inf
            for t in self.targets:
                m = margins[t.recognizer.name]
                loss = loss + F.relu(self.margin(t.recognizer) + s.overshoot - m).mean()
                worst = min(worst, float(m.detach().min()))
            if s.min_ssim is not None:
                loss = loss + 10.0 * F.relu(s.min_ssim + 0.005 - self._whole_ssim(x))
            delta.grad = None
            loss.backward()
            optimiser.step()
            self._project(delta)
            record = {"step": i, "loss": round(float(loss.detach()), 4), "worst_margin": round(worst, 4)}
            return record, i % s.check_every == 0 and worst >= smallest_margin

        found = search(
            start_image=self.photo.copy(),
            start_verified={t.recognizer.name: unattacked[t.recognizer.name] for t in self.targets},
            steps=s.steps, max_seconds=s.max_seconds, robust=s.robust, step=step,
            candidate=lambda: self._fit_budget(delta), verify=self.verify, progress=progress,
        )
        return PhotoAttackResult(found.image, found.steps, time.perf_counter() - start, found.stopped,
                                 found.verified, found.history)


def verify_photo(image: np.ndarray, targets: list[Target], goal: str, margin_of) -> dict:
    """recognizer -> {"raw": verdict, "recompressed": verdict} for a uint8 photo (see score.py)."""
    out: dict[str, dict] = {t.recognizer.name: {} for t in targets}
    for key, img, min_face in (("raw", image, MIN_FACE_SIZE), ("recompressed", recompress(image), RECOMPRESSED_MIN_FACE)):
        try:
            det = detect_faces(img, "auto", min_face_size=min_face)
        except IdfaceError as err:
            det, error = None, str(err)
        for t in targets:
            rec = t.recognizer
            if det is None:
                out[rec.name][key] = {"error": error, "success": False, "success_with_margin": False,
                                      "goal_margin": -math.inf}
                continue
            emb, _ = embed_photo_array(rec, img, detection=det)
            out[rec.name][key] = read_verdict(rec, emb, t.reference, goal, margin_of(rec))
    return out


def make_targets(photo: np.ndarray, face, recognizers: list, references: dict[str, Reference]) -> list[Target]:
    """Each attacked recognizer's alignment for the detected face (the transform its embed_photo uses)."""
    targets = []
    for rec in recognizers:
        tpl = get_template(rec.template, rec.input_size)
        matrix = estimate_transform(np.asarray(face.landmarks, np.float64), tpl,
                                    None if face.dlib5 is None else np.asarray(face.dlib5, np.float64))
        ref = references[rec.name]
        targets.append(Target(
            rec, matrix, ref,
            torch.from_numpy(np.asarray(ref.source, np.float32)),
            None if ref.target is None else torch.from_numpy(np.asarray(ref.target, np.float32)),
            [torch.from_numpy(np.asarray(a, np.float32)) for a in ref.also],
        ))
    return targets
