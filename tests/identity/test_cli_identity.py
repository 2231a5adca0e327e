"""`python -m idface identity A B [--json]`: verdicts, JSON records, one-line errors, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from idface.cli import main


@pytest.fixture(autouse=True)
def no_arcface(monkeypatch, tmp_path):
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(tmp_path / "no_weights"))


def run_cli(capsys, *args):
    code = main(["identity", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_same_person_json(capsys, faces_dir):
    code, out, err = run_cli(capsys, faces_dir / "obama.jpg", faces_dir / "obama3.jpg", "--json")
    assert code == 0, err
    records = json.loads(out)
    by_name = {r["recognizer"]: r for r in records}
    dlib = by_name["dlib-resnet"]
    assert dlib["available"] and dlib["same_person"] is True
    assert dlib["threshold"] == 0.6 and 0 < dlib["distance"] < 0.6 and "similarity" not in dlib
    assert dlib["higher_is_more_similar"] is False
    assert dlib["faces"] == ["1 face found", "1 face found"] or all("face" in m for m in dlib["faces"])
    arc = by_name["arcface"]
    assert arc["available"] is False and "not found" in arc["reason"] and arc["same_person"] is None
    for name in ("faceres", "faceres-deep"):  # HSE FaceRes from the npm package (make venv fetches it)
        rec = by_name[name]
        if rec["available"]:
            assert rec["same_person"] is True and rec["higher_is_more_similar"] is True
            assert rec["similarity"] > rec["threshold"] and "distance" not in rec
            assert "0.82" in rec["threshold_source"]


def test_different_people_text(capsys, faces_dir):
    code, out, _ = run_cli(capsys, faces_dir / "obama2.jpg", faces_dir / "biden.jpg")
    assert code == 0
    assert "dlib-resnet: euclidean distance" in out and "-> DIFFERENT PEOPLE" in out
    assert "arcface: unavailable" in out
    assert "faceres: cosine similarity" in out or "faceres: unavailable" in out


def test_unreadable_inputs_exit_nonzero_with_one_line(capsys, faces_dir, tmp_path, rng):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(noise)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((faces_dir / "obama.jpg").read_bytes()[:5000])
    cases = [
        (notes, "not an image file"),
        (tmp_path / "missing.jpg", "does not exist"),
        (noise, "no face found"),
        (truncated, "runcated"),
    ]
    for bad, reason in cases:
        code, out, err = run_cli(capsys, faces_dir / "obama.jpg", bad)
        assert code == 1, bad
        assert err.startswith("error: ") and reason in err and err.count("\n") == 1, err
        assert "Traceback" not in err


@pytest.mark.slow
def test_module_entry_point_offline(faces_dir, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "IDFACE_FACEXLIB_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "idface", "identity", str(faces_dir / "obama.jpg"),
                         str(faces_dir / "obama2.jpg")], capture_output=True, text=True, env=env, timeout=300)
    assert ok.returncode == 0 and "SAME PERSON" in ok.stdout, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "idface", "identity", str(faces_dir / "obama.jpg"), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_arcface_listed_when_its_weights_are_local(capsys, faces_dir, tmp_path, monkeypatch):
    """Plumbing: with an IR-SE50 file in facexlib's model_rootpath the CLI reports ArcFace's
    similarity against its own threshold (random weights here, so the verdict means nothing)."""
    import torch

    from idface.identity import arcface, registry

    weights = tmp_path / "facexlib"
    weights.mkdir()
    torch.manual_seed(0)
    torch.save(arcface.build_arcface_ir_se50().state_dict(), weights / arcface.WEIGHTS_FILE)
    monkeypatch.setenv("IDFACE_FACEXLIB_DIR", str(weights))
    registry.clear_cache()
    try:
        code, out, _ = run_cli(capsys, faces_dir / "obama.jpg", faces_dir / "obama2.jpg", "--json",
                               "--recognizer", "arcface")
    finally:
        registry.clear_cache()
    assert code == 0
    (record,) = json.loads(out)
    assert record["available"] and record["recognizer"] == "arcface" and record["threshold"] == 0.241
    assert -1.0 <= record["similarity"] <= 1.0 and isinstance(record["same_person"], bool)


def test_download_flag_offline_reports_why(capsys, faces_dir):
    """--download asks for ArcFace's weights; offline (HF_HUB_OFFLINE=1) nothing is fetched and
    the record says where it looked."""
    code, out, _ = run_cli(capsys, faces_dir / "obama.jpg", faces_dir / "obama2.jpg", "--json", "--download",
                           "--recognizer", "arcface")
    assert code == 1  # the only recognizer asked for cannot run
    (record,) = json.loads(out)
    assert record["available"] is False and "arcface unavailable" in record["reason"]
    assert "downloads off" in record["reason"]
