import io

import numpy as np
import pytest
from PIL import Image

from idface import images, labels
from idface.errors import InputError


def _png_bytes(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_real_photo_loads_as_rgb(faces_dir):
    arr = images.load_image(faces_dir / "obama.jpg")
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "CMYK", "I;16", "P"])
def test_every_common_mode_becomes_rgb(mode):
    img = Image.new("RGB", (64, 48), (10, 200, 30)).convert(mode)
    arr = images.load_image(_png_bytes(img, "TIFF" if mode == "CMYK" else "PNG"))
    assert arr.shape == (48, 64, 3) and arr.dtype == np.uint8


def test_exif_rotation_is_honoured():
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    arr = images.load_image(_png_bytes(img, "JPEG", exif=exif))
    assert arr.shape[:2] == (80, 40)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"not an image at all", "not an image"),
        (_png_bytes(Image.new("RGB", (64, 64)))[:60], "corrupt|truncated|could not"),
        (_png_bytes(Image.new("RGB", (8, 8))), "at least"),
    ],
)
def test_bad_files_name_the_problem(data, message):
    with pytest.raises(InputError, match=message):
        images.load_image(data)


def test_huge_image_is_refused_before_decoding():
    img = Image.new("1", (8000, 8000))  # 64 MP, tiny on disk
    with pytest.raises(InputError, match="megapixel"):
        images.load_image(_png_bytes(img))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        images.load_image(tmp_path / "nope.jpg")


def test_index_and_colour_masks_decode_identically(tmp_path, rng):
    lm = np.kron(rng.integers(0, 19, size=(8, 8)), np.ones((4, 4))).astype(np.uint8)  # 4x4 blocks
    images.save_label_map(lm, tmp_path / "m.png")
    assert np.array_equal(images.load_mask(tmp_path / "m.png"), lm)
    assert np.array_equal(images.load_mask(tmp_path / "m_color.png"), lm)
    Image.fromarray(lm, mode="L").save(tmp_path / "gray.png")
    assert np.array_equal(images.load_mask(tmp_path / "gray.png"), lm)


def test_antialiased_colour_edges_snap_to_neighbouring_classes():
    lm = np.zeros((40, 40), dtype=np.uint8)
    lm[:, 20:] = labels.class_index("cloth")
    rgb = labels.index_to_color(lm).astype(np.float32)
    # a 25 % blend of cloth green into black at the edge is close to the necklace colour
    rgb[:, 19] = 0.75 * rgb[:, 19] + 0.25 * rgb[:, 21]
    out = images.load_mask(rgb.astype(np.uint8))
    assert set(np.unique(out).tolist()) <= {0, labels.class_index("cloth")}


def test_grayscale_photo_is_not_a_mask(faces_dir):
    gray = Image.open(faces_dir / "obama.jpg").convert("L")
    with pytest.raises(InputError, match="index mask"):
        images.load_mask(_png_bytes(gray))


def test_mask_resize_is_nearest(rng):
    lm = rng.integers(0, 19, size=(16, 16)).astype(np.uint8)
    out = images.load_mask(lm, size=64)
    assert out.shape == (64, 64) and set(np.unique(out)) <= set(np.unique(lm))
