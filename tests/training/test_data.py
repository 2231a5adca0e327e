import numpy as np
import torch

from idface.labels import CLASS_INDEX, flip_label_map
from idface.training.data import AugmentConfig, FaceMaskDataset, ResumableBatchSampler, augment


def test_flip_swaps_left_and_right_classes_with_the_image():
    img = torch.rand(3, 8, 8)
    lab = torch.zeros(8, 8, dtype=torch.long)
    lab[2, 1] = CLASS_INDEX["l_eye"]
    out_img, out_lab = augment(img, lab, AugmentConfig(flip=1.0), np.random.default_rng(0))
    assert torch.equal(out_img, img.flip(-1))
    assert out_lab[2, 6] == CLASS_INDEX["r_eye"]
    assert np.array_equal(out_lab.numpy(), flip_label_map(lab.numpy().astype(np.uint8)))


def _centre_x(lab: torch.Tensor, name: str) -> float:
    return float(torch.nonzero(lab == CLASS_INDEX[name])[:, 1].float().mean())


def test_side_convention_survives_flip_augmentation():
    """CelebAMask-HQ: l_eye / l_brow / l_ear are the subject's left, on the image's RIGHT. The
    bundled training maps hold it, a flip by the augmentation keeps it (the image is mirrored and
    the partners swapped) and two flips give the map back bit for bit."""
    from PIL import Image

    from idface.training.config import REPO_ROOT

    lab = torch.from_numpy(np.asarray(Image.open(REPO_ROOT / "assets/train/obama_mask.png"), dtype=np.int64))
    img = torch.rand(3, *lab.shape)
    half = lab.shape[1] / 2
    for name in ("l_eye", "l_brow", "l_ear"):
        assert _centre_x(lab, name) > half > _centre_x(lab, "r" + name[1:])
    once_img, once = augment(img, lab, AugmentConfig(flip=1.0), np.random.default_rng(0))
    for name in ("l_eye", "l_brow", "l_ear"):
        assert _centre_x(once, name) > half > _centre_x(once, "r" + name[1:])
        # the subject's left after the flip is what was his right, mirrored
        assert abs(_centre_x(once, name) - (lab.shape[1] - 1 - _centre_x(lab, "r" + name[1:]))) < 1e-3
    twice_img, twice = augment(once_img, once, AugmentConfig(flip=1.0), np.random.default_rng(0))
    assert torch.equal(twice, lab) and torch.equal(twice_img, img)


def test_geometric_augmentation_moves_image_and_labels_together():
    """An image painted from its label map stays consistent with it after scale/shift/warp."""
    lab = torch.zeros(32, 32, dtype=torch.long)
    lab[8:24, 10:22] = 1
    lab[12:16, 12:15] = 4
    colours = torch.rand(19, 3)
    img = colours[lab].permute(2, 0, 1)
    cfg = AugmentConfig(flip=0.0, scale=(1.1, 1.3), shift=0.1, rotate=10, warp=0.03)
    out_img, out_lab = augment(img, lab, cfg, np.random.default_rng(3))
    assert not torch.equal(out_lab, lab)
    painted = colours[out_lab].permute(2, 0, 1)
    agree = ((out_img - painted).abs().max(0).values < 1e-3).float().mean()
    assert agree > 0.9  # disagreement only on boundary pixels (bilinear vs nearest)


def test_augmentation_is_a_function_of_the_seed():
    img, lab = torch.rand(3, 16, 16), torch.randint(0, 19, (16, 16))
    cfg = AugmentConfig(scale=(1.0, 1.2), shift=0.1, warp=0.02, brightness=0.2, contrast=0.2, saturation=0.2, gamma=0.1)
    a = augment(img, lab, cfg, np.random.default_rng(7))
    b = augment(img, lab, cfg, np.random.default_rng(7))
    c = augment(img, lab, cfg, np.random.default_rng(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_sampler_resumes_mid_epoch_and_shards_ranks():
    full = list(ResumableBatchSampler(10, 2, seed=1, epoch=3))
    assert len(full) == 5
    assert list(ResumableBatchSampler(10, 2, seed=1, epoch=3, start_batch=2)) == full[2:]
    r0 = list(ResumableBatchSampler(10, 2, seed=1, rank=0, world_size=2, epoch=0))
    r1 = list(ResumableBatchSampler(10, 2, seed=1, rank=1, world_size=2, epoch=0))
    seen = [i for batch in r0 + r1 for i, _ in batch]
    assert len(seen) == 8 and len(set(seen)) == 8  # no overlap between ranks
    # a data set smaller than the batch is repeated
    tiny = list(ResumableBatchSampler(3, 4, seed=0))
    assert len(tiny) == 1 and len(tiny[0]) == 4


def test_dataset_from_prepared_folder(prepared_64):
    ds = FaceMaskDataset.from_prepared(prepared_64, "train", augment_cfg=AugmentConfig(flip=0.5, warp=0.02))
    assert len(ds) == 14
    item = ds[(0, 123)]
    assert item["image"].shape == (3, 64, 64) and -1 <= item["image"].min() and item["image"].max() <= 1
    assert item["label"].shape == (64, 64) and item["label"].dtype == torch.int64
    assert item["identity"] == 100
    plain = ds[0]
    assert torch.equal(ds[0]["image"], plain["image"])
    assert len(FaceMaskDataset.from_prepared(prepared_64, "test")) == 1
    resized = FaceMaskDataset.from_prepared(prepared_64, "train", size=32)
    assert resized[0]["image"].shape == (3, 32, 32)


def test_endless_sampler_continues_epoch_by_epoch():
    one = [b for e in range(3) for b in ResumableBatchSampler(7, 2, seed=4, epoch=e)]
    endless = ResumableBatchSampler(7, 2, seed=4, endless=True)
    it = iter(endless)
    assert [next(it) for _ in range(len(one))] == one
    resumed = iter(ResumableBatchSampler(7, 2, seed=4, epoch=1, start_batch=2, endless=True))
    assert [next(resumed) for _ in range(4)] == one[5:9]
