"""What a checkpoint was trained on (idface.evaluation.seen): read from its model card, a training
checkpoint's state or the run folder's config, init_from followed, and judged by dlib itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idface.evaluation.seen import (SAME_PHOTO_DISTANCE, checkpoint_folder, training_config, training_record,
                                    training_record_from_configs, what_it_saw)
from idface.training.checkpoint import CARD_CONFIG_HEADING

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "assets" / "train"
FACES = ROOT / "assets" / "faces"


def pairs(*names: str) -> list[dict]:
    return [{"image": f"assets/train/{n}.png", "label": f"assets/train/{n}_mask.png"} for n in names]


def card(folder: Path, config: dict) -> Path:
    """A checkpoint folder whose model card ends as the trainer writes it (Trainer.model_card_notes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("# a model\n\n## Training\n\n- run: x\n\n" + CARD_CONFIG_HEADING
                                      + "\n\n```json\n" + json.dumps(config, indent=1) + "\n```\n")
    return folder


def test_card_record_follows_init_from_and_resolves_paths_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                               # relative paths resolve from the folder's ancestors
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    stage1 = card(tmp_path / "runs" / "one" / "final", {"data": {"pairs": pairs("obama", "biden")}})
    stage2 = card(tmp_path / "runs" / "two" / "final", {"data": {"pairs": pairs("obama2")},
                                                         "init_from": "runs/one/final",
                                                         "identity_pool": {"photos": [{"path": "assets/faces/obama3.jpg"}]}})
    record = training_record(stage2)
    assert record.complete and record.source == str(stage2 / "README.md")
    assert [p.name for p in record.images] == ["obama.png", "biden.png", "obama2.png"]
    assert [p.name for p in record.token_photos] == ["obama3.jpg"]
    assert training_record(stage1).images[-1].name == "biden.png"


def test_missing_stage_or_photo_makes_the_record_incomplete(tmp_path):
    folder = card(tmp_path / "ckpt", {"data": {"pairs": pairs("obama") + [{"image": "nowhere/x.png"}]},
                                      "init_from": "runs/gone/final"})
    record = training_record(folder)
    assert not record.complete
    assert any("nowhere/x.png" in n for n in record.notes) and any("runs/gone/final" in n for n in record.notes)
    assert training_record(card(tmp_path / "folders", {"data": {"root": "data/prepared"}})).complete is False


def test_other_places_a_config_is_kept(tmp_path):
    config = {"data": {"pairs": pairs("biden")}, "max_steps": 3}
    step = tmp_path / "run" / "checkpoints" / "step_00000003"
    (step / "ema").mkdir(parents=True)
    (step / "ema" / "config.json").write_text("{}")          # the EMA model's (model) config
    (step / "trainer_state.json").write_text(json.dumps({"step": 3, "config": config}))
    assert checkpoint_folder(step) == step / "ema"
    assert checkpoint_folder(tmp_path) == tmp_path
    assert training_config(step / "ema") == (config, str(step / "trainer_state.json"))
    final = tmp_path / "run" / "final"
    final.mkdir()
    (final / "config.json").write_text("{}")
    assert training_config(final) is None                   # the run's config.json not written yet
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    assert training_config(final)[0] == config
    assert training_config(tmp_path / "run") is None        # a model config.json one level up is not a training config
    (tmp_path / "stage2.json").write_text(json.dumps({"data": {"pairs": [{"image": str(TRAIN / "obama.png")}]},
                                                      "init_from": "runs/not/followed"}))
    record = training_record_from_configs([tmp_path / "run" / "config.json", tmp_path / "stage2.json"])
    assert record.complete and [p.name for p in record.images] == ["biden.png", "obama.png"]


@pytest.fixture(scope="module")
def judge():
    pytest.importorskip("dlib")
    from idface.evaluation.judge import DlibJudge

    return DlibJudge()


def test_dlib_tells_the_same_photo_the_same_person_and_a_stranger(judge, tmp_path):
    from idface.images import load_image

    record = training_record(card(tmp_path / "ckpt", {"data": {"pairs": [
        {"image": str(TRAIN / "biden.png")}, {"image": str(TRAIN / "obama.png")}]}}))
    cache: dict = {}
    seen = {n: what_it_saw(judge.descriptor(load_image(FACES / f)), record, judge, cache)
            for n, f in (("biden", "biden.jpg"), ("obama2", "obama2.jpg"), ("astronaut", "astronaut.png"))}
    assert seen["biden"].photo and seen["biden"].person and seen["biden"].distance < SAME_PHOTO_DISTANCE
    assert not seen["obama2"].photo and seen["obama2"].person and seen["obama2"].nearest == "obama.png"
    assert seen["astronaut"].photo is False and seen["astronaut"].person is False
    assert "never seen" in seen["astronaut"].describe()
    unknown = what_it_saw(judge.descriptor(load_image(FACES / "biden.jpg")), None, judge)
    assert unknown.person is None and "unknown" in unknown.describe()
