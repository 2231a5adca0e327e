"""`python -m idface conceal`: dodging on a real photo through the command line, JSON report
checked against dlib itself, synthetic-marked PNG, one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conceal_reference import reference_psnr, reference_ssim

from idface.cli import main
from idface.images import load_image
from idface.outputs import read_png_metadata


@pytest.mark.slow
def test_dodge_from_the_command_line(faces_dir, tmp_path, capsys, judge):
    out = tmp_path / "dodged.png"
    code = main(["conceal", "--photo", str(faces_dir / "obama2.jpg"), "--goal", "dodge",
                 "--regions", "face", "--attack", "dlib-resnet", "--out", str(out), "--json",
                 "--steps", "60", "--min-psnr", "38"])
    rep = json.loads(capsys.readouterr().out)
    assert code == (0 if rep["success"] else 3)
    assert rep["success"], rep
    result = load_image(out)
    original = load_image(faces_dir / "obama2.jpg")
    # the per-recognizer record the issue asks for, with the numbers dlib itself gives
    entry = rep["recognizers"]["dlib-resnet"]
    for key in ("distance_to_source", "distance_to_target", "same_as_source", "recompressed"):
        assert key in entry
    assert entry["distance_to_target"] is None  # dodging has no target
    assert rep["conditions_held_by_all_attacked"]["raw"] == {"no_longer_reads_source": True}
    d = judge.distance(result, original)
    assert d >= 0.6 and not entry["same_as_source"]
    # idface runs HOG on a downscaled copy (detect_scale), so its box, and so dlib's 5 points and
    # chip, differ from a full-resolution dlib run by a few pixels; on an attacked photo that moves
    # the distance by about 0.01 (0.6636 vs 0.6529 here on obama2): same verdict, nearby number
    assert entry["distance_to_source"] == pytest.approx(d, abs=0.02)
    assert rep["psnr"] == pytest.approx(reference_psnr(original, result), abs=1e-3) and rep["psnr"] >= 38 - 20 * math.log10(4)
    assert rep["ssim_luma"] == pytest.approx(reference_ssim(original, result), abs=2e-3)
    assert rep["seconds"] > 0 and rep["out"] == str(out)
    meta = read_png_metadata(out)
    assert meta["idface:altered_photo"] == "true" and meta["idface:synthetic"] == "false"  # photo mode: an altered photo
    assert json.loads(meta["idface:settings"])["goal"] == "dodge"


def test_errors_are_one_line(faces_dir, tmp_path, capsys):
    code = main(["conceal", "--photo", str(faces_dir / "obama.jpg"), "--goal", "impersonate",
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "target" in err and len(err.splitlines()) == 1
    code = main(["conceal", "--photo", str(faces_dir / "obama.jpg"), "--target", str(faces_dir / "biden.jpg"),
                 "--out", str(tmp_path / "o.jpg")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and ".png" in err and len(err.splitlines()) == 1
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    code = main(["conceal", "--photo", str(blank), "--goal", "dodge", "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "no face" in err and len(err.splitlines()) == 1
    code = main(["conceal", "--photo", str(faces_dir / "obama.jpg"), "--goal", "dodge", "--regions", "wings",
                 "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "unknown region" in err
