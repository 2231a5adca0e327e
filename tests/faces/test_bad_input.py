"""Every kind of awkward photo, through the library entry point (prepare_face) and the CLIs:
usable ones work (grayscale, RGBA, 16-bit, CMYK, EXIF-rotated, huge, several faces), unusable ones
fail with a one-line reason (no face, face too small, corrupt, truncated, not an image, too big)."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from idface.cli import main
from idface.errors import InputError, NoFaceError
from idface.faces import prepare_face
from idface.faces.align import get_template

EYES = get_template("generator", 256).points[:2]


@pytest.fixture(scope="module")
def obama_pil(faces_dir):
    return Image.open(faces_dir / "obama.jpg").convert("RGB")


def to_bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def assert_aligned(face):
    """A usable result: one face, eyes where the generator template puts them."""
    assert face.faces_found == 1 and face.image.shape == (256, 256, 3)
    found = face.transform.to_crop(face.face.landmarks[:2])
    assert np.linalg.norm(found - EYES, axis=1).max() < 7


def exif_rotated(img: Image.Image, orientation: int) -> bytes:
    """Store the pixels turned so that only honouring EXIF orientation makes the face upright."""
    turned = {6: img.transpose(Image.Transpose.ROTATE_90), 8: img.transpose(Image.Transpose.ROTATE_270),
              3: img.transpose(Image.Transpose.ROTATE_180)}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return to_bytes(turned, "JPEG", exif=exif.tobytes(), quality=95)


USABLE = {
    "grayscale": lambda im: to_bytes(im.convert("L"), "PNG"),
    "rgba": lambda im: to_bytes(im.convert("RGBA"), "PNG"),
    "16-bit": lambda im: to_bytes(Image.fromarray((np.asarray(im.convert("L")).astype(np.uint16) * 257)), "PNG"),
    "cmyk": lambda im: to_bytes(im.convert("CMYK"), "JPEG"),
    "exif-6": lambda im: exif_rotated(im, 6),
    "exif-8": lambda im: exif_rotated(im, 8),
    "exif-3": lambda im: exif_rotated(im, 3),
    "webp": lambda im: to_bytes(im, "WEBP"),
}


@pytest.mark.parametrize("kind", sorted(USABLE))
def test_usable_variants(obama_pil, kind):
    data = USABLE[kind](obama_pil)
    if kind == "16-bit":
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
    assert_aligned(prepare_face(data, parse=False))


def test_rgba_with_transparent_background(obama_pil):
    rgba = obama_pil.convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, :60] = 0
    rgba.putalpha(Image.fromarray(alpha))
    assert_aligned(prepare_face(to_bytes(rgba, "PNG"), parse=False))


def test_huge_photo_is_downscaled_for_detection(obama_pil):
    big = obama_pil.resize((obama_pil.width * 5, obama_pil.height * 5), Image.BILINEAR)  # 26 MP
    face = prepare_face(np.asarray(big), parse=False)
    assert_aligned(face)
    assert "downscaled" in face.message


def test_several_faces_says_which_was_used(faces_dir):
    a = np.asarray(Image.open(faces_dir / "obama.jpg").convert("RGB").resize((480, 600)))
    b = np.asarray(Image.open(faces_dir / "biden.jpg").convert("RGB").resize((264, 600)))
    face = prepare_face(np.concatenate([a, b], 1), parse=False)
    assert face.faces_found == 2 and "2 faces found; used the best-scoring one" in face.message


BAD = {
    "not an image": (b"hello, this is text", "not an image file"),
    "empty": (b"", "empty"),
    "truncated": (None, "runcated"),
    "corrupt": (None, "runcated|corrupt|could not be opened|not an image"),
    "too big": (None, "megapixel limit"),
    "tiny": (None, "at least 32x32"),
}


def bad_bytes(kind, obama_pil):
    data, _ = BAD[kind]
    if data is not None:
        return data
    jpeg = to_bytes(obama_pil, "JPEG", quality=90)
    if kind == "truncated":
        return jpeg[: len(jpeg) // 2]
    if kind == "corrupt":
        return jpeg[:200] + bytes(range(256)) * 4 + jpeg[1224:]
    if kind == "too big":
        return to_bytes(Image.new("1", (9000, 5000)), "PNG")  # 45 MP, refused before decoding
    return to_bytes(obama_pil.resize((20, 25)), "PNG")


@pytest.mark.parametrize("kind", sorted(BAD))
def test_unusable_files_one_line_reason(obama_pil, kind):
    with pytest.raises(InputError, match=BAD[kind][1]) as err:
        prepare_face(bad_bytes(kind, obama_pil))
    assert "\n" not in str(err.value)


def test_no_face_and_face_too_small(obama_pil, rng):
    with pytest.raises(NoFaceError, match="no face found"):
        prepare_face(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8))
    canvas = np.full((500, 500, 3), 90, np.uint8)
    small = cv2.resize(np.asarray(obama_pil), (70, 88), interpolation=cv2.INTER_AREA)
    canvas[200:288, 200:270] = small
    with pytest.raises(NoFaceError, match="(too small to use|no face found)"):
        prepare_face(canvas)


@pytest.mark.parametrize("command", ["identity", "parse"])
@pytest.mark.parametrize("kind", ["not an image", "truncated", "too big"])
def test_clis_answer_one_line_and_nonzero(command, kind, obama_pil, tmp_path, faces_dir, capsys, monkeypatch):
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path / "none"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bad_bytes(kind, obama_pil))
    args = ["identity", str(faces_dir / "obama.jpg"), str(bad)] if command == "identity" else \
        ["parse", str(bad), "--out", str(tmp_path / "m.png")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_clis_work_on_a_cmyk_exif_rotated_photo(obama_pil, tmp_path, faces_dir, capsys, monkeypatch):
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path / "none"))
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(exif_rotated(obama_pil, 6))
    cmyk = tmp_path / "cmyk.jpg"
    cmyk.write_bytes(USABLE["cmyk"](obama_pil))
    assert main(["identity", str(rotated), str(cmyk), "--json"]) == 0
    import json

    records = json.loads(capsys.readouterr().out)
    dlib = [r for r in records if r["recognizer"] == "dlib-resnet"][0]
    assert dlib["same_person"] is True and dlib["distance"] < 0.2
