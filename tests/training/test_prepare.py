import csv
import json

import numpy as np
from PIL import Image

from idface.cli import main
from idface.labels import CLASS_INDEX
from idface.training.prepare import merge_part_masks, part_mask_paths, prepare, split_of
from idface.testing.rawdata import write_raw_dataset


def read_index(folder):
    with open(folder / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_prepare_converts_release_layout_and_skips_corrupt(raw_dataset, tmp_path, capsys):
    out = tmp_path / "prep"
    code = main(["prepare", "--raw", str(raw_dataset), "--out", str(out), "--size", "32", "--workers", "1"])
    assert code == 0
    captured = capsys.readouterr()
    # the corrupt image is reported with its path, the count is printed at the end
    assert str(raw_dataset / "CelebA-HQ-img" / "3.jpg") in captured.err
    assert "prepared 15 of 16 images" in captured.out
    rows = read_index(out)
    assert [r["name"] for r in rows] == [f"{i:05d}" for i in range(16) if i != 3]
    # last round(16 * 2000 / 30000) = 1 image is test
    assert [r["name"] for r in rows if r["split"] == "test"] == ["00015"]
    # identity through CelebA-HQ-to-CelebA-mapping.txt + identity_CelebA.txt (fixture: 100 + i // 2)
    assert {int(r["index"]): int(r["identity"]) for r in rows} == {i: 100 + i // 2 for i in range(16) if i != 3}
    img = Image.open(out / "images" / "00000.png")
    lab = np.asarray(Image.open(out / "labels" / "00000.png"))
    assert img.size == (32, 32) and img.mode == "RGB"
    assert lab.shape == (32, 32) and lab.dtype == np.uint8 and lab.max() < 19
    summary = json.loads((out / "prepared.json").read_text())
    assert summary["failed"] == 1 and "3.jpg" in summary["failures"]["3"]


def test_prepare_label_map_equals_merged_parts(raw_dataset, tmp_path):
    out = tmp_path / "prep"
    prepare(raw_dataset, out, size=128, limit=2, progress=False, log=lambda *a: None)
    merged = merge_part_masks(part_mask_paths(raw_dataset, 1))
    expected = np.asarray(Image.fromarray(merged).resize((128, 128), Image.Resampling.NEAREST))
    assert np.array_equal(np.asarray(Image.open(out / "labels" / "00001.png")), expected)
    assert {CLASS_INDEX["skin"], CLASS_INDEX["hair"], CLASS_INDEX["l_eye"], CLASS_INDEX["r_eye"]} <= set(np.unique(expected))


def test_later_classes_win_when_parts_overlap(tmp_path):
    skin = np.zeros((8, 8), np.uint8); skin[2:6, 2:6] = 255
    nose = np.zeros((8, 8), np.uint8); nose[3:5, 3:5] = 255
    hair = np.zeros((8, 8), np.uint8); hair[0:3, :] = 255
    paths = {}
    for name, m in (("skin", skin), ("nose", nose), ("hair", hair)):
        p = tmp_path / f"00000_{name}.png"
        Image.fromarray(m).save(p)
        paths[CLASS_INDEX[name]] = p
    lm = merge_part_masks(paths)
    assert lm[4, 4] == CLASS_INDEX["nose"]  # nose (2) after skin (1)
    assert lm[2, 3] == CLASS_INDEX["hair"]  # hair (13) after skin
    assert lm[5, 2] == CLASS_INDEX["skin"] and lm[7, 7] == 0


def test_prepare_resumes_without_redoing_work(raw_dataset, tmp_path):
    out = tmp_path / "prep"
    first = prepare(raw_dataset, out, size=32, limit=6, progress=False, log=lambda *a: None)
    assert first["converted"] == 5 and first["failed"] == 1
    (out / "images" / "00002.png").unlink()  # as if interrupted before this one
    mtime = (out / "images" / "00001.png").stat().st_mtime_ns
    second = prepare(raw_dataset, out, size=32, limit=6, progress=False, log=lambda *a: None)
    assert second["converted"] == 1 and second["already_done"] == 4 and second["failed"] == 1
    assert (out / "images" / "00001.png").stat().st_mtime_ns == mtime
    assert not list(out.rglob("*.tmp"))


def test_missing_masks_reported_and_skipped(tmp_path):
    raw = write_raw_dataset(tmp_path / "raw", n=3)
    for p in (raw / "CelebAMask-HQ-mask-anno" / "0").glob("00001_*.png"):
        p.unlink()
    summary = prepare(raw, tmp_path / "out", size=32, progress=False, log=lambda *a: None)
    assert summary["failed"] == 1 and "missing masks" in summary["failures"]["1"]
    assert summary["converted"] == 2


def test_split_rule_is_the_common_split_on_the_full_release():
    split = split_of(list(range(30000)))
    assert all(split[i] == "train" for i in range(28000))
    assert all(split[i] == "test" for i in range(28000, 30000))
    assert list(split_of([5]).values()) == ["train"]


def test_prepare_rejects_wrong_folder(tmp_path, capsys):
    assert main(["prepare", "--raw", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "CelebA-HQ-img" in capsys.readouterr().err
