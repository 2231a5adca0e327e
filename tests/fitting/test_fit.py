"""Per-face fitting on a tiny model: it fits, the checkpoint it writes loads everywhere and
reproduces the fit exactly, the CLI reports JSON, deltas and cancelling work."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from idface.cli import main
from idface.errors import InputError
from idface.fitting import FitCancelled, FitConfig, WeightDelta, fit_prepared
from idface.model import IdFaceModel
from idface.pipeline import IdFacePipeline

# min_token_effect=0: run the injection steps even though a random tiny generator barely uses its token
QUICK = dict(code_steps=6, steps=14, max_seconds=None, min_token_effect=0.0)


@pytest.fixture(scope="module")
def fitted(tiny_base, aligned_face, dlib_port, face_embedding):
    _, base = tiny_base
    image, label = aligned_face
    emb = face_embedding
    progress = []
    result = fit_prepared(base, image, label, emb, FitConfig(**QUICK), recognizer=dlib_port,
                          base_label="tiny test base", progress=progress.append)
    return result, emb, progress


def test_fit_raises_psnr_and_writes_a_checkpoint_that_reproduces_it(fitted, tiny_base, aligned_face, tmp_path):
    result, emb, progress = fitted
    assert result.psnr_after > result.psnr_before + 1.0
    assert result.psnr_face_after > result.psnr_face_before
    assert (result.code_steps, result.steps, result.stopped) == (6, 14, "done")
    assert result.anchors == 6 and result.foreign_identities >= 2    # bundled faces, other people
    stages = [p.stage for p in progress]
    assert stages[0] == "preparing" and "codes" in stages and "generator" in stages and stages[-1] == "done"
    assert all(0 <= p.fraction <= 1 for p in progress)

    folder = result.save(tmp_path / "fitted")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (folder / "README.md").read_text()
    assert "Fitted to one face" in card and "biometric" in card
    config = json.loads((folder / "config.json").read_text())
    assert config["extra"]["fitted"]["from"] == "tiny test base"
    loaded = IdFaceModel.from_pretrained(str(folder))
    image, label = aligned_face
    again = IdFacePipeline(loaded)(label, style=(image, label), identity_embedding=emb, attention=False).image
    # the code offsets were folded into the style encoder: the ordinary pipeline gives the fit
    assert np.abs(again.astype(int) - result.reconstruction.astype(int)).max() <= 1
    # and the base model was not touched
    _, base = tiny_base
    base_again = IdFacePipeline(base)(label, style=(image, label), identity_embedding=emb, attention=False).image
    assert np.abs(base_again.astype(int) - result.reconstruction.astype(int)).mean() > 2


def test_weight_delta_is_fp16_and_rebuilds_the_fit(fitted, tiny_base, aligned_face):
    result, emb, _ = fitted
    _, base = tiny_base
    delta = WeightDelta.between(base, result.model)
    assert all(t.dtype.is_floating_point and t.element_size() == 2 for t in delta.diffs.values())
    assert any(k.startswith("generator.") for k in delta.diffs) and any("code_bias" in k for k in delta.diffs)
    assert not any(k.startswith("identity_projection.") for k in delta.diffs)   # the token map is kept
    assert delta.nbytes < 2.1 * sum(p.numel() for p in result.model.generator.parameters()) + 10_000
    rebuilt = delta.apply(base)
    image, label = aligned_face
    out = IdFacePipeline(rebuilt)(label, style=(image, label), identity_embedding=emb, attention=False).image
    assert np.abs(out.astype(int) - result.reconstruction.astype(int)).mean() < 1.0


def test_injection_steps_are_skipped_when_the_base_ignores_its_token(tiny_base, aligned_face, dlib_port,
                                                                   face_embedding):
    _, base = tiny_base
    image, label = aligned_face
    result = fit_prepared(base, image, label, face_embedding, FitConfig(code_steps=0, steps=1, max_seconds=None),
                          recognizer=dlib_port)
    assert result.token_effect < FitConfig().min_token_effect and result.foreign_identities == 0


def test_cancel_stops_the_fit(tiny_base, aligned_face):
    _, base = tiny_base
    image, label = aligned_face
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(FitCancelled, match="cancelled"):
        fit_prepared(base, image, label, None, FitConfig(**QUICK), cancel=cancel)


@pytest.mark.slow
def test_fit_cli_json_then_generate_with_it(tiny_base, faces_dir, tmp_path, capsys):
    folder, _ = tiny_base
    out = tmp_path / "fitted"
    code = main(["fit", "--style", str(faces_dir / "obama.jpg"), "--out", str(out), "--checkpoint", str(folder),
                 "--steps", "3", "--max-seconds", "0", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert {"psnr_face_before", "psnr_face_after", "identity_before", "identity_after", "identity_metric",
            "steps", "code_steps", "seconds", "prepare_seconds", "stopped", "out"} <= set(report)
    assert report["steps"] == 3 and report["identity_metric"] == "dlib-resnet distance"
    assert "100%" in captured.err and "left" in captured.err            # progress with an ETA
    assert (out / "model.safetensors").is_file()
    mask = faces_dir.parent / "masks" / "short_hair.png"
    code = main(["generate", "--mask", str(mask), "--style", str(faces_dir / "obama.jpg"), "--identity",
                 str(faces_dir / "biden.jpg"), "--out", str(tmp_path / "g.png"), "--checkpoint", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["checkpoint"].endswith("fitted")
    # another person's identity face: the fitted checkpoint practised its token first
    practice = report["settings"]["identity_practice"]
    assert practice["recognizer"] == "dlib-resnet" and "distance_to_identity" in practice
    assert "practised the identity face's token" in report["settings"]["weights"]


def test_fit_cli_identity_practises_that_token_into_the_checkpoint(tiny_base, faces_dir, tmp_path, capsys):
    folder, _ = tiny_base
    out = tmp_path / "fitted_with_identity"
    code = main(["fit", "--style", str(faces_dir / "obama.jpg"), "--identity", str(faces_dir / "biden.jpg"),
                 "--out", str(out), "--checkpoint", str(folder), "--steps", "2", "--max-seconds", "0", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["identity_practice"]["steps"] >= 0
    assert set(report["identity_practice"]["recognizers_practised_against"]) >= {"dlib-resnet"}
    card = json.loads((out / "config.json").read_text())
    assert "identity_practice" in json.dumps(card) and (out / "model.safetensors").is_file()
    code = main(["fit", "--style", str(faces_dir / "obama.jpg"), "--identity", str(tmp_path / "nope.jpg"),
                 "--out", str(out), "--checkpoint", str(folder)])
    err = capsys.readouterr().err
    assert code == 1 and "--identity" in err and err.count("\n") == 1


def test_fit_cli_bad_input_is_one_line(tiny_base, tmp_path, capsys):
    folder, _ = tiny_base
    code = main(["fit", "--style", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"), "--checkpoint", str(folder)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    code = main(["fit", "--style", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "o"), "--steps", "-1"])
    assert code == 1 and "--steps" in capsys.readouterr().err


def test_excluded_bundled_faces_are_no_foreign_identity(tiny_base, aligned_face, dlib_port, face_embedding):
    """A benchmark keeps the people whose tokens it injects out of the fit (--unseen-tokens)."""
    _, base = tiny_base
    image, label = aligned_face
    quick = dict(QUICK, steps=1, code_steps=0)
    every = fit_prepared(base, image, label, face_embedding, FitConfig(**quick), recognizer=dlib_port)
    fewer = fit_prepared(base, image, label, face_embedding,
                         FitConfig(**quick, exclude_faces=("astronaut", "obama", "obama2")), recognizer=dlib_port)
    assert every.foreign_identities == 5                      # the bundled faces but biden (the photo's person)
    assert fewer.foreign_identities == 2 and fewer.anchors == 3
    with pytest.raises(InputError, match="unknown bundled faces"):
        FitConfig(exclude_faces=("nobody",))
