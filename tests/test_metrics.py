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


SHARMA_2005 = [  # L1 a1 b1, L2 a2 b2, Delta E 2000 (Sharma, Wu & Dalal 2005, Table 1)
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def test_ciede2000_matches_sharma_2005_test_data():
    from idface.metrics import ciede2000

    d = np.array(SHARMA_2005)
    assert np.abs(ciede2000(d[:, :3], d[:, 3:6]) - d[:, 6]).max() < 1e-4       # published to 4 decimals
    swapped = ciede2000(torch.tensor(d[:, 3:6]), torch.tensor(d[:, :3])).numpy()  # symmetric, torch too
    assert np.abs(swapped - d[:, 6]).max() < 1e-4


def test_srgb_to_lab_and_the_per_pixel_map():
    from idface.metrics import ciede2000_rgb, srgb_to_lab

    lab = srgb_to_lab(np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert np.allclose(lab, [[100, 0, 0], [53.2408, 80.0925, 67.2032], [0, 0, 0]], atol=2e-3)  # D65 sRGB references
    a = np.full((4, 5, 3), 120, np.uint8)
    b = a.copy()
    b[1, 2] = (121, 120, 120)
    m = ciede2000_rgb(a, b)
    assert m.shape == (4, 5) and m[1, 2] > 0.2 and np.count_nonzero(m) == 1


def test_ciede2000_basis_predicts_small_differences():
    """|P d| from the linearisation matches the real CIEDE2000 of small changes d, on random
    colours (blues included: the rotation term) and on grey (no hue)."""
    from idface.metrics import ciede2000, ciede2000_basis, srgb_to_lab

    g = torch.Generator().manual_seed(0)
    rgb = torch.cat([torch.rand(4000, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05,
                     torch.full((50, 3), 0.5, dtype=torch.float64)])
    d = torch.randn(rgb.shape, generator=g, dtype=torch.float64) / 255                # about one grey level
    p = ciede2000_basis(rgb)                                                            # [N, 3, 3]
    assert p.shape == (4050, 3, 3)
    approx = (p @ d[..., None])[..., 0].norm(dim=-1)
    real = ciede2000(srgb_to_lab(rgb), srgb_to_lab(rgb + d))
    rel = (approx - real).abs() / real
    assert float(rel.median()) < 0.01 and float(rel.quantile(0.99)) < 0.06
    # inverting it gives steps of a chosen CIEDE2000 size in any direction (moderate colours: at the
    # most saturated ones such a step in chroma is a large RGB change, where the linearisation bends)
    rgb = rgb * 0.6 + 0.2
    u = torch.nn.functional.normalize(torch.randn(4050, 3, generator=g, dtype=torch.float64), dim=-1) * 0.5
    step = (torch.linalg.inv(ciede2000_basis(rgb)) @ u[..., None])[..., 0]
    err = (ciede2000(srgb_to_lab(rgb), srgb_to_lab(rgb + step)) - 0.5).abs()
    assert float(err.median()) < 0.01 and float(err.quantile(0.99)) < 0.05


def test_srgb_to_lab_jacobian_matches_autograd():
    """ciede2000_basis's written-out d Lab / d sRGB agrees with autograd through srgb_to_lab,
    on both sides of the sRGB and CIELAB linear segments."""
    import torch

    from idface.metrics import _srgb_to_lab_jacobian, srgb_to_lab

    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    rgb[:50] *= 0.03                                   # dark: the linear segments
    x = rgb.clone().requires_grad_(True)
    lab = srgb_to_lab(x)
    rows = [torch.autograd.grad(lab[:, k].sum(), x, retain_graph=k < 2)[0] for k in range(3)]
    torch.testing.assert_close(_srgb_to_lab_jacobian(rgb), torch.stack(rows, 1), rtol=1e-9, atol=1e-9)
