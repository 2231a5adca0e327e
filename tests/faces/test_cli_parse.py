"""`python -m idface parse PHOTO --out MASK.png` writes a lossless index PNG and a colour preview."""

import numpy as np
from PIL import Image

from idface.cli import main
from idface.images import load_image, load_mask
from idface.labels import CLASS_INDEX, PALETTE


def test_parse_writes_index_and_preview(faces_dir, tmp_path, capsys):
    out = tmp_path / "mask.png"
    face_out = tmp_path / "face.png"
    assert main(["parse", str(faces_dir / "biden.jpg"), "--out", str(out), "--face-out", str(face_out)]) == 0
    text = capsys.readouterr().out
    assert "(detector: dlib_hog)" in text  # which detector found the face
    # what the parser cannot produce: the mesh parsers find eyeglasses and hats, the landmark parser does not
    mesh = "parser: mesh" in text
    assert ("cannot produce: Earring, Necklace" if mesh else "cannot produce: Eyeglasses, Hat, Earring, Necklace") in text
    from idface.weights.human_models import human_models_status

    if human_models_status() == "available":  # auto: the npm face graphs' parser
        assert "parser: mesh" in text and "Apache-2.0" in text
    else:
        assert "parser: landmarks" in text and "non-commercial" in text
    assert main(["parse", str(faces_dir / "biden.jpg"), "--out", str(out), "--parser", "landmarks"]) == 0
    text = capsys.readouterr().out
    assert "parser: landmarks" in text and "non-commercial" in text
    lm = load_mask(out)
    assert lm.shape == (256, 256) and (lm == CLASS_INDEX["skin"]).sum() > 5000
    assert Image.open(out).mode == "P"
    preview = np.asarray(Image.open(tmp_path / "mask_color.png").convert("RGB"))
    assert np.array_equal(preview, PALETTE[lm])
    assert np.asarray(Image.open(face_out)).shape == (256, 256, 3)


def test_parse_photo_frame_and_512(faces_dir, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["parse", str(faces_dir / "grace_hopper.jpg"), "--out", str(out), "--photo-frame"]) == 0
    assert load_mask(out).shape == load_image(faces_dir / "grace_hopper.jpg").shape[:2]
    assert main(["parse", str(faces_dir / "grace_hopper.jpg"), "--out", str(out), "--size", "512"]) == 0
    assert load_mask(out).shape == (512, 512)


def test_parse_argument_errors(faces_dir, tmp_path, capsys):
    assert main(["parse", str(faces_dir / "obama.jpg"), "--out", str(tmp_path / "m.jpg")]) == 1
    assert "must be a .png" in capsys.readouterr().err
    assert main(["parse", str(faces_dir / "obama.jpg"), "--out", str(tmp_path / "nope" / "m.png")]) == 1
    assert "does not exist" in capsys.readouterr().err
