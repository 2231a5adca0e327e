"""`python -m idface generate`: same function and the same scores as the app's /generate."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from idface.cli import main
from idface.outputs import read_png_metadata

MASKS = Path(__file__).resolve().parents[2] / "assets" / "masks"


def test_generate_cli_json_plumbing_checkpoint(plumbing_checkpoint, plumbing_engine, faces_dir, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["generate", "--mask", str(MASKS / "drawn_face_color.png"), "--style", str(faces_dir / "obama.jpg"),
                 "--identity", str(faces_dir / "biden.jpg"), "--out", str(out),
                 "--checkpoint", str(plumbing_checkpoint), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert Image.open(out).size == (plumbing_engine.image_size,) * 2
    assert read_png_metadata(out)["idface:synthetic"] == "true"
    assert set(report["recognizers"]) == set(plumbing_engine.recognizers())
    for e in report["recognizers"].values():
        kind = "similarity" if e["higher_is_more_similar"] else "distance"  # keys say what they hold
        assert {f"{kind}_to_style", f"{kind}_to_identity", "threshold", "same_as_style",
                "same_as_identity", "verdict"} <= set(e)
    # the same pipeline function as /generate gives the same numbers
    from idface.engine import generate_from_photos

    gen, _, _ = generate_from_photos(plumbing_engine, MASKS / "drawn_face_color.png", faces_dir / "obama.jpg",
                                     faces_dir / "biden.jpg")
    for name, e in gen.scores["recognizers"].items():
        key = ("similarity" if e["higher_is_more_similar"] else "distance") + "_to_identity"
        assert abs(e[key] - report["recognizers"][name][key]) < 1e-2  # uint8 rounding


def test_generate_cli_bad_input_is_one_line(plumbing_checkpoint, faces_dir, tmp_path, capsys):
    code = main(["generate", "--mask", str(tmp_path / "nope.png"), "--style", str(faces_dir / "obama.jpg"),
                 "--identity", str(faces_dir / "biden.jpg"), "--out", str(tmp_path / "o.png"),
                 "--checkpoint", str(plumbing_checkpoint)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "does not exist" in err and "Traceback" not in err


def test_generate_cli_without_any_checkpoint_says_where_it_looked(faces_dir, tmp_path, monkeypatch, capsys):
    import idface.hub

    monkeypatch.setattr(idface.hub, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.delenv("IDFACE_CHECKPOINT", raising=False)
    code = main(["generate", "--mask", str(MASKS / "drawn_face.png"), "--style", str(faces_dir / "obama.jpg"),
                 "--identity", str(faces_dir / "biden.jpg"), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "IDFACE_CHECKPOINT" in err and "idface-demo" in err
    assert not (tmp_path / "o.png").exists()
