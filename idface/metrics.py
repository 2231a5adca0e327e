"""Image metrics, each written once: PSNR, two SSIMs (named by what they compare), mIoU, LPIPS, FID.

- psnr(a, b, data_range): 10 log10(range^2 / MSE); numpy images -> float, torch [B, ...] -> [B] (inf if equal).
- ssim_rgb(fake, real): Wang et al. 2004 per RGB channel over the 'valid' region, Gaussian window
  11 / sigma 1.5, K1 0.01, K2 0.03; torch [B, 3, H, W] in [0, data_range] -> [B]. Evaluation's SSIM.
- ssim_luma(a, b): the same formula on luminance (BT.601 Y) with a reflect-padded window (sigma 1.5
  truncated at 11 x 11) over the whole image; uint8 numpy -> float. Concealment's SSIM. ssim_luma_map(a, b):
  its map [H, W], to average over one region (the benchmark's structural change on skin).
- ssim_luma_torch(a, b): ssim_luma, differentiable, [B, 3, H, W] in [0, 1] -> [B] (budgets in optimisers).
- ciede2000(lab1, lab2): CIE colour difference Delta E 2000 (Sharma, Wu & Dalal 2005), torch or
  numpy [..., 3] CIELAB -> [...]; srgb_to_lab (D65, IEC 61966-2-1); ciede2000_rgb(a, b): uint8 RGB
  images [H, W, 3] -> per-pixel Delta E 2000 map [H, W] (concealment's perceptual budget);
  ciede2000_basis(rgb): its local linearisation, [..., 3] -> [..., 3, 3] (perceptually uniform steps).
- LPIPS (Zhang et al. 2018, the lpips package, AlexNet): `LPIPSMetric()(fake, real)` on [B, 3, H, W]
  in [0, 1] -> [B].
- FID and KID: `FIDMetric` (TF-Inception pool3 as torch-fidelity ports it: the network and resize of
  published FIDs), `frechet_distance`.
Pretrained files are found by idface.weights; a metric that cannot run raises UnavailableError
with the reason, and callers report the reason instead of a number.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from idface import weights
from idface.errors import UnavailableError

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 1.5 * 3.5 = 5.25 -> an 11 x 11 window, as in the reference implementation
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # px each side of the window's centre (scipy's rounding): 5
SSIM_K1, SSIM_K2 = 0.01, 0.03
LUMA = np.array([0.299, 0.587, 0.114])  # BT.601 Y


# ---------------------------------------------------------------------------------------------
# PSNR


def psnr(a, b, data_range: float = 255.0, min_mse: float = 0.0, region=None):
    """PSNR in dB. numpy images of one shape (uint8 scale by default) -> float; torch [B, ...]
    -> [B] per image (pass data_range=1.0 for [0, 1] tensors; min_mse > 0 keeps it finite, for
    use inside a loss). numpy only: region [H, W] bool restricts it to those pixels (all when
    None or empty)."""
    if isinstance(a, torch.Tensor):
        mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(min_mse)
        return 10 * torch.log10(data_range**2 / mse)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"psnr: shapes differ {a64.shape} vs {b64.shape}")
    sq = (a64 - b64) ** 2
    if region is not None and np.any(region):
        sq = (sq.mean(-1) if sq.ndim == 3 else sq)[np.asarray(region, bool)]
    return psnr_of_mse(float(np.mean(sq)), data_range)


def psnr_of_mse(mse: float, data_range: float = 255.0) -> float:
    """PSNR in dB of a mean squared error (inf for 0; the inverse of mse_for_psnr)."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def mse_for_psnr(db: float, data_range: float = 255.0) -> float:
    """The largest mean squared error that still reaches `db`."""
    return data_range**2 / 10 ** (db / 10.0)


# ---------------------------------------------------------------------------------------------
# SSIM


def _ssim_map(mx, my, vx, vy, cxy, data_range: float):
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _gaussian_1d(radius: int, device=None, dtype=torch.float32) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(t**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).to(dtype)


def ssim_rgb(fake: torch.Tensor, real: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image SSIM [B]: per channel over the 'valid' region, averaged over channels and positions."""
    x, y = fake.float(), real.float()
    c = x.shape[1]
    g = _gaussian_1d(SSIM_RADIUS, x.device)
    kh = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    kw = g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    mx, my = blur(x), blur(y)
    s = _ssim_map(mx, my, blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my, data_range)
    return s.flatten(1).mean(1)


def ssim_luma(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM on luminance between two uint8 images [H, W, 3] (or [H, W])."""
    return float(ssim_luma_map(a, b).mean())


def ssim_luma_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM on luminance at every pixel [H, W] (float64) between two uint8 images [H, W, 3] (or [H, W]):
    averaged over a region, how much of its structure (local contrast and pattern) a change altered."""
    import cv2

    luma = lambda v: np.asarray(v, np.float64) @ LUMA if np.ndim(v) == 3 else np.asarray(v, np.float64)  # noqa: E731
    x, y = luma(a), luma(b)
    if x.shape != y.shape:
        raise ValueError(f"ssim: shapes differ {x.shape} vs {y.shape}")
    g = _gaussian_1d(SSIM_RADIUS, dtype=torch.float64).numpy()
    # separable, in float64, mirrored at the border (OpenCV's BORDER_REFLECT is scipy.ndimage's "reflect":
    # the same numbers as gaussian_filter(sigma 1.5, truncate 3.5) in 60 % of its time)
    blur = lambda v: cv2.sepFilter2D(v, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mx, my = blur(x), blur(y)
    return _ssim_map(mx, my, blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my, 255.0)


def ssim_luma_torch(a: torch.Tensor, b: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Differentiable ssim_luma: a, b [B, 3, H, W] in [0, 1] -> [B] (or maps [B, 1, H, W])."""
    luma = torch.as_tensor(LUMA, dtype=a.dtype, device=a.device).view(1, 3, 1, 1)
    x, y = (a * luma).sum(1, keepdim=True) * 255, (b * luma).sum(1, keepdim=True) * 255
    g = _gaussian_1d(SSIM_RADIUS, a.device, a.dtype)
    r = g.numel() // 2

    def blur(v):
        v = F.pad(v, (r, r, r, r), mode="reflect")
        v = F.conv2d(v, g.view(1, 1, 1, -1))
        return F.conv2d(v, g.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    smap = _ssim_map(mx, my, blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my, 255.0)
    return smap.mean((1, 2, 3)) if reduce else smap


# ---------------------------------------------------------------------------------------------
# Label maps


_SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                         [0.2126729, 0.7151522, 0.0721750],
                         [0.0193339, 0.1191920, 0.9503041]])
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb):
    """sRGB in [0, 1] [..., 3] (torch or numpy) -> CIELAB [..., 3] (D65 white)."""
    xp = torch if isinstance(rgb, torch.Tensor) else np
    lin = xp.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = _SRGB_TO_XYZ / _D65_WHITE[:, None]
    m = torch.as_tensor(m, dtype=rgb.dtype, device=rgb.device) if xp is torch else m
    xyz = lin @ m.T                                                  # [..., 3], white -> (1, 1, 1)
    eps, kappa = 216 / 24389, 24389 / 27
    f = xp.where(xyz > eps, xp.clip(xyz, eps, None) ** (1 / 3), (kappa * xyz + 16) / 116)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return xp.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], -1)


def ciede2000(lab1, lab2, kl: float = 1.0, kc: float = 1.0, kh: float = 1.0):
    """CIEDE2000 colour difference of CIELAB colours [..., 3] -> [...] (torch or numpy), written
    from the formulas of Sharma, Wu & Dalal (2005), including their notes on hue angles."""
    xp = torch if isinstance(lab1, torch.Tensor) else np
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (xp.sqrt(a1 ** 2 + b1 ** 2) + xp.sqrt(a2 ** 2 + b2 ** 2)) / 2
    g = 0.5 * (1 - xp.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = xp.sqrt(a1p ** 2 + b1 ** 2), xp.sqrt(a2p ** 2 + b2 ** 2)
    h1p = xp.remainder(xp.rad2deg(xp.arctan2(b1, a1p)), 360.0)   # atan2(0, 0) = 0, as the paper sets
    h2p = xp.remainder(xp.rad2deg(xp.arctan2(b2, a2p)), 360.0)
    dL, dC = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = xp.where(dh > 180, dh - 360, xp.where(dh < -180, dh + 360, dh))
    chroma_zero = (c1p * c2p) == 0
    dh = xp.where(chroma_zero, xp.zeros_like(dh), dh)
    dH = 2 * xp.sqrt(c1p * c2p) * xp.sin(xp.deg2rad(dh) / 2)
    L_bar, C_bar = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = xp.where(xp.abs(h1p - h2p) <= 180, h_sum / 2,
                     xp.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2))
    h_bar = xp.where(chroma_zero, h_sum, h_bar)
    t = (1 - 0.17 * xp.cos(xp.deg2rad(h_bar - 30)) + 0.24 * xp.cos(xp.deg2rad(2 * h_bar))
         + 0.32 * xp.cos(xp.deg2rad(3 * h_bar + 6)) - 0.20 * xp.cos(xp.deg2rad(4 * h_bar - 63)))
    d_theta = 30 * xp.exp(-(((h_bar - 275) / 25) ** 2))
    rc = 2 * xp.sqrt(C_bar ** 7 / (C_bar ** 7 + 25.0 ** 7))
    sl = 1 + 0.015 * (L_bar - 50) ** 2 / xp.sqrt(20 + (L_bar - 50) ** 2)
    sc = 1 + 0.045 * C_bar
    sh = 1 + 0.015 * C_bar * t
    rt = -xp.sin(xp.deg2rad(2 * d_theta)) * rc
    tl, tc, th = dL / (kl * sl), dC / (kc * sc), dH / (kh * sh)
    return xp.sqrt(tl ** 2 + tc ** 2 + th ** 2 + rt * tc * th)


def ciede2000_rgb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between two uint8 RGB images [H, W, 3] -> [H, W] float."""
    to_lab = lambda x: srgb_to_lab(np.asarray(x, np.float64) / 255.0)  # noqa: E731
    return ciede2000(to_lab(a), to_lab(b))


def _srgb_to_lab_jacobian(rgb: torch.Tensor) -> torch.Tensor:
    """d Lab / d sRGB of srgb_to_lab, written out: rgb [N, 3] in [0, 1] -> [N, 3 (Lab), 3 (RGB)]
    (the chain: sRGB decoding, the XYZ matrix, the cube root or its linear part, the Lab rows)."""
    d_lin = torch.where(rgb <= 0.04045, torch.full_like(rgb, 1 / 12.92),
                        2.4 / 1.055 * ((rgb + 0.055) / 1.055) ** 1.4)                 # [N, 3]
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = torch.as_tensor(_SRGB_TO_XYZ / _D65_WHITE[:, None], dtype=rgb.dtype)            # [3, 3]
    xyz = lin @ m.T                                                                     # [N, 3]
    eps, kappa = 216 / 24389, 24389 / 27
    d_f = torch.where(xyz > eps, xyz.clamp_min(eps) ** (-2 / 3) / 3, torch.full_like(xyz, kappa / 116))
    lab_of_f = torch.tensor([[0.0, 116.0, 0.0], [500.0, -500.0, 0.0], [0.0, 200.0, -200.0]], dtype=rgb.dtype)
    return lab_of_f @ (d_f[:, :, None] * m[None] * d_lin[:, None, :])               # [N, 3, 3]


def ciede2000_basis(rgb: torch.Tensor, min_chroma: float = 0.5) -> torch.Tensor:
    """Local linearisation of CIEDE2000 at each colour: rgb [..., 3] in [0, 1] (torch) -> P [..., 3, 3]
    with ciede2000(lab(rgb), lab(rgb + d)) ~= |P @ d| for small RGB changes d (in [0, 1] units).

    The rows of P give d's lightness, chroma and hue differences in CIEDE2000's own weighting
    (dL'/S_L, dC'/S_C, dH'/S_H with the reference colour's S_L, S_C, S_H and a' = (1 + G) a), mixed
    by the square root of [[1, R_T/2], [R_T/2, 1]] for the rotation term R_T (saturated blues).
    Where the chroma is below `min_chroma` the hue is undefined and the (a', b') plane is used as it
    is. Invert P to
    move along perceptually uniform directions (P^-1 u changes the colour by |u| Delta E 2000)."""
    x = rgb.detach().reshape(-1, 3).to(torch.float64)
    lab = srgb_to_lab(x)                                                   # [N, 3]
    j_lab = _srgb_to_lab_jacobian(x)                                       # [N, 3 (Lab), 3 (RGB)]
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    c = torch.sqrt(a ** 2 + b ** 2)
    g = 0.5 * (1 - torch.sqrt(c ** 7 / (c ** 7 + 25.0 ** 7)))
    ap = (1 + g) * a
    cp = torch.sqrt(ap ** 2 + b ** 2)
    h = torch.remainder(torch.rad2deg(torch.atan2(b, ap)), 360.0)
    t = (1 - 0.17 * torch.cos(torch.deg2rad(h - 30)) + 0.24 * torch.cos(torch.deg2rad(2 * h))
         + 0.32 * torch.cos(torch.deg2rad(3 * h + 6)) - 0.20 * torch.cos(torch.deg2rad(4 * h - 63)))
    sl = 1 + 0.015 * (L - 50) ** 2 / torch.sqrt(20 + (L - 50) ** 2)
    sc = 1 + 0.045 * cp
    sh = 1 + 0.015 * cp * t
    grey = cp < min_chroma
    cos = torch.where(grey, torch.ones_like(cp), ap / cp.clamp_min(1e-12))
    sin = torch.where(grey, torch.zeros_like(cp), b / cp.clamp_min(1e-12))
    n = x.shape[0]
    to_lch = torch.zeros(n, 3, 3, dtype=x.dtype)                           # (dL, da, db) -> weighted (dL', dC', dH')
    to_lch[:, 0, 0] = 1 / sl
    to_lch[:, 1, 1] = cos * (1 + g) / sc
    to_lch[:, 1, 2] = sin / sc
    to_lch[:, 2, 1] = -sin * (1 + g) / sh
    to_lch[:, 2, 2] = cos / sh
    d_theta = 30 * torch.exp(-(((h - 275) / 25) ** 2))
    rt = -torch.sin(torch.deg2rad(2 * d_theta)) * 2 * torch.sqrt(cp ** 7 / (cp ** 7 + 25.0 ** 7))
    p, q = (torch.sqrt(1 + rt / 2) + torch.sqrt(1 - rt / 2)) / 2, (torch.sqrt(1 + rt / 2) - torch.sqrt(1 - rt / 2)) / 2
    mix = torch.zeros_like(to_lch)                                         # [[1, 0, 0], [0, p, q], [0, q, p]]
    mix[:, 0, 0], mix[:, 1, 1], mix[:, 1, 2], mix[:, 2, 1], mix[:, 2, 2] = 1, p, q, q, p
    return (mix @ to_lch @ j_lab).to(rgb.dtype).reshape(*rgb.shape[:-1], 3, 3)


def mean_iou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """mIoU over the classes present in either map (summed intersections / unions per class
    across all images, then averaged over classes). pred/target: [N, H, W] int."""
    pred = np.asarray(pred).reshape(-1)
    target = np.asarray(target).reshape(-1)
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(np.logical_and(p, t).sum() / union)
    return float(np.mean(ious)) if ious else float("nan")


# ---------------------------------------------------------------------------------------------
# LPIPS (the lpips package, v0.1, AlexNet), weights through idface.weights

_LPIPS_NETS: dict[tuple[str, str], torch.nn.Module] = {}


class LPIPSMetric:
    """LPIPS (Zhang et al. 2018; lpips 0.1.4, net="alex", version 0.1): fake, real [B, 3, H, W] in
    [0, 1] -> [B]; lower = more alike. The AlexNet backbone is found (or fetched once, when
    downloads are allowed) by idface.weights; else UnavailableError with the reason."""

    def __init__(self, device="cpu", download: bool | None = None):
        try:
            linear, backbone = weights.lpips_weights(download)
        except UnavailableError as err:
            raise UnavailableError(f"LPIPS unavailable: {err}") from None
        key = (str(device), str(backbone))
        if key not in _LPIPS_NETS:
            try:
                _LPIPS_NETS[key] = _load_lpips(linear, backbone).to(device)
            except Exception as err:
                raise UnavailableError(f"LPIPS weights could not be loaded: {type(err).__name__}: {err}") from None
        self.net = _LPIPS_NETS[key]

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.net(fake * 2 - 1, real * 2 - 1).flatten()


def _load_lpips(linear, backbone) -> torch.nn.Module:
    """lpips.LPIPS with its own linear layers and torchvision's AlexNet features from `backbone`
    (the file idface.weights found), instead of letting torchvision look for it."""
    import lpips

    with warnings.catch_warnings():  # lpips asks torchvision for alexnet(pretrained=False): deprecated wording, same thing
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, model_path=str(linear), verbose=False)
    state = torch.load(str(backbone), map_location="cpu", weights_only=True)  # torchvision's alexnet state dict
    loaded = 0
    for block in net.net.children():  # lpips keeps AlexNet's features[i] as block child "i"
        for index, layer in block.named_children():
            own = {k[len(f"features.{index}."):]: v for k, v in state.items() if k.startswith(f"features.{index}.")}
            if own:
                layer.load_state_dict(own, strict=True)
                loaded += len(own)
    if loaded != 10:  # five convolutions, weight and bias each
        raise ValueError(f"{backbone} is not torchvision's AlexNet state dict ({loaded} of 10 feature tensors)")
    return net.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# FID and KID: TF-Inception features as published FIDs compute them


class FIDMetric:
    """FID (Heusel et al. 2017) and KID (Binkowski et al. 2018) between generated and real images.

    Features: the 2048-d pool3 output of the TF-Inception graph of 2015-12-05 (the network of the
    original TTUR FID code and of pytorch-fid), as ported by torch-fidelity 0.4.0 with its
    TF1-compatible bilinear resize to 299 x 299, on uint8-quantised images (as from saved PNGs).
    KID: torch-fidelity's estimator (cubic polynomial kernel, 100 subsets of min(1000, N) images).
    update(fake, real) takes [B, 3, H, W] in [0, 1]; results() -> {"fid", "kid_mean", "kid_std", "fid_note"}.
    """

    note = ("TF-Inception 2015-12-05 pool3 via torch-fidelity 0.4.0 (TF1 bilinear resize to 299, uint8 input): "
            "the network and resize of published FIDs; compare only at the same image count and resolution")

    def __init__(self, device="cpu", download: bool | None = None):
        path = weights.fid_inception_weights_path(download)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        try:
            net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
        except Exception as err:
            raise UnavailableError(f"FID Inception weights in {path} could not be loaded: {type(err).__name__}: {err}") from None
        self.net = net.to(device).eval()
        self.device = device
        self.real: list[np.ndarray] = []
        self.fake: list[np.ndarray] = []

    @torch.no_grad()
    def _features(self, img: torch.Tensor) -> np.ndarray:
        x = (img.float().clamp(0, 1) * 255).round().to(torch.uint8).to(self.device)  # [B, 3, H, W] uint8
        return self.net(x)[0].double().cpu().numpy()  # [B, 2048]

    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        self.fake.append(self._features(fake))
        self.real.append(self._features(real))

    def compute(self) -> float:
        return frechet_distance(np.concatenate(self.fake), np.concatenate(self.real))

    def kid(self) -> tuple[float, float]:
        """KID mean and standard deviation over subsets."""
        from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

        fake, real = np.concatenate(self.fake), np.concatenate(self.real)
        n = min(len(fake), len(real))
        if n < 2:
            raise UnavailableError(f"KID needs at least 2 images per set; got {len(fake)} and {len(real)}")
        out = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subset_size=min(1000, n),
                                     kid_subsets=100, verbose=False, rng_seed=2020)
        return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]

    def results(self) -> dict:
        kid_mean, kid_std = self.kid()
        return {"fid": self.compute(), "kid_mean": kid_mean, "kid_std": kid_std, "fid_note": self.note}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets [N, D].

    With fewer images than dimensions (N < D, e.g. 2,000 x 2048), Tr (S_a S_b)^1/2 is computed
    exactly as the nuclear norm of C_a C_b^T (C: centred features / sqrt(N - 1); the non-zero
    eigenvalues of S_a S_b are the squared singular values of that N_a x N_b matrix), which is
    cheaper than a D x D matrix square root and has no imaginary round-off; otherwise scipy's sqrtm."""
    if len(a) < 2 or len(b) < 2:
        raise UnavailableError(f"FID needs at least 2 images per set; got {len(a)} and {len(b)}")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = (a - mu_a) / math.sqrt(len(a) - 1), (b - mu_b) / math.sqrt(len(b) - 1)  # S = C^T C
    trace_a, trace_b = float((ca * ca).sum()), float((cb * cb).sum())
    return float(((mu_a - mu_b) ** 2).sum() + trace_a + trace_b - 2 * _trace_sqrt_product(ca, cb))


def _trace_sqrt_product(ca: np.ndarray, cb: np.ndarray) -> float:
    """Tr (S_a S_b)^1/2 for S = C^T C, C [N, D]."""
    if min(len(ca), len(cb)) < ca.shape[1]:
        return float(np.linalg.svd(ca @ cb.T, compute_uv=False).sum())
    from scipy import linalg

    sa, sb = ca.T @ ca, cb.T @ cb
    covmean, _ = linalg.sqrtm(sa @ sb, disp=False)
    if not np.isfinite(covmean).all():
        eps = np.eye(sa.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sa + eps) @ (sb + eps))
    return float(np.trace(covmean.real))
