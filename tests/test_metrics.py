import numpy as np
import pytest
import torch

from idface import metrics as M
from idface import weights


def test_psnr_from_mse():
    a = torch.zeros(2, 3, 8, 8)
    b = a + 0.1  # mse 0.01 -> 20 dB
    assert M.psnr(b, a, data_range=1.0).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert torch.isinf(M.psnr(a, a, data_range=1.0)).all()


def test_ssim_closed_form_on_constant_images():
    """Constant images have zero variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1)."""
    a, b = 0.2, 0.6
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    assert M.ssim_rgb(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=5e-4)  # float32 moments


def test_ssim_is_one_for_identical_and_drops_with_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g)
    assert M.ssim_rgb(x, x).item() == pytest.approx(1.0, abs=1e-5)
    slight = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    heavy = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert 1.0 > M.ssim_rgb(slight, x).item() > M.ssim_rgb(heavy, x).item()


def test_mean_iou():
    t = np.array([[[0, 0, 1, 1]]])
    p = np.array([[[0, 1, 1, 1]]])
    # class 0: 1/2, class 1: 2/3
    assert M.mean_iou(p, t, 19) == pytest.approx((0.5 + 2 / 3) / 2)


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 4))
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([1.0, 0, 0, 0])
    assert M.frechet_distance(shifted, a) == pytest.approx(1.0, abs=1e-3)




def test_frechet_distance_with_fewer_images_than_dimensions_matches_the_matrix_square_root():
    """The N < D route (nuclear norm of C_a C_b^T) against scipy's sqrtm on the same covariances."""
    from scipy import linalg

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(7, 8)) + 0.5
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    reference = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.trace(linalg.sqrtm(sa @ sb).real)
    assert M.frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    assert M.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
