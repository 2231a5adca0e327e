"""Which photos and people a checkpoint was trained on, from its own records, so that a benchmark
can say whether a face it measures is one the model never saw.

    record = training_record("runs/heldout-inject/final")   # None: the folder keeps no training config
    record.images        # every training photo of every stage (init_from followed), resolved paths
    record.token_photos  # photos seen only as identity tokens (identity_pool.photos)
    record.complete      # False when some stage's data could not be listed (notes say why)

    judge = DlibJudge()
    seen = what_it_saw(judge.descriptor(photo), record, judge)   # SeenVerdict: photo / person / nearest

Where the training config is found, first hit wins: the model card's "Training config:" JSON
block (idface.training writes it into README.md of final/ and of checkpoints/step_*/ema/), a
checkpoint folder's trainer_state.json (the folder itself or, for its ema/, the folder above), or
the run folder's copy of the config (config.json with a "data" entry, one level up from final/).
A stage started from init_from adds that folder's photos (its record, found the same way).
Relative paths in a training config are the training repository's; they are resolved against
the checkpoint folder's ancestors and the working directory, first that exists.

Person and photo are told apart by dlib itself (evaluation.judge): the same person below dlib's
0.6; the same photo (another crop, recolour or resize of it) below SAME_PHOTO_DISTANCE.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from idface.evaluation.judge import SAME_PERSON_DISTANCE
from idface.training.checkpoint import CARD_CONFIG_HEADING

# dlib distance below which two images count as the same photo. Measured on the bundled photos:
# a crop, resize or recolouring of one photo 0.04-0.20 (assets/faces vs assets/train, recolour
# copies included); three different photos of Obama 0.33-0.45 from each other
SAME_PHOTO_DISTANCE = 0.25
_JSON_BLOCK = re.compile(re.escape(CARD_CONFIG_HEADING) + r"\s*```json\s*(\{.*?\})\s*```", re.S)


@dataclass
class TrainingRecord:
    source: str                                          # where the (last stage's) config was found
    images: list[Path] = field(default_factory=list)     # training photos, all stages
    token_photos: list[Path] = field(default_factory=list)  # identity-pool photos without a mask
    complete: bool = True                                # every stage's photos listed
    notes: list[str] = field(default_factory=list)


@dataclass
class SeenVerdict:
    photo: bool | None          # this photo (or a crop / recolour of it) was trained on; None: unknown
    person: bool | None         # this person was (a training photo or an identity-pool photo)
    nearest: str | None         # the nearest training photo (file name) by dlib
    distance: float | None      # dlib distance to it
    note: str = ""

    def describe(self) -> str:
        if self.photo is None and self.person is None:
            return f"unknown ({self.note})" if self.note else "unknown"
        what = ("photo trained on" if self.photo else "person trained on, not this photo" if self.person
                else "person never seen")
        near = f"; nearest training photo {self.nearest} at dlib {self.distance:.2f}" if self.nearest else ""
        return what + near + (f" ({self.note})" if self.note else "")


def training_config(folder: str | Path) -> tuple[dict, str] | None:
    """(training config, where it was found) for a checkpoint folder, or None."""
    folder = Path(folder)
    card = folder / "README.md"
    if card.is_file():
        match = _JSON_BLOCK.search(card.read_text(errors="replace"))
        if match:
            try:
                return json.loads(match.group(1)), str(card)
            except json.JSONDecodeError:
                pass
    for state in (folder / "trainer_state.json", folder.parent / "trainer_state.json"):
        if state.is_file():
            config = json.loads(state.read_text()).get("config")
            if isinstance(config, dict):
                return config, str(state)
    run_config = folder.parent / "config.json"
    if folder.name == "final" and run_config.is_file():
        config = json.loads(run_config.read_text())
        if isinstance(config, dict) and "data" in config:
            return config, str(run_config)
    return None


def checkpoint_folder(folder: str | Path) -> Path:
    """The loadable checkpoint inside a training checkpoint folder (runs/X/checkpoints/step_N:
    its ema/, the EMA model as a Hub checkpoint); any other folder as it is."""
    folder = Path(folder)
    if (folder / "trainer_state.json").is_file() and (folder / "ema" / "config.json").is_file():
        return folder / "ema"
    return folder


def _resolve(path: str, folder: Path) -> Path | None:
    p = Path(path)
    if p.is_absolute():
        return p if p.exists() else None
    for base in (*folder.resolve().parents, Path.cwd()):
        if (base / p).exists():
            return base / p
    return None


def training_record(folder: str | Path, _depth: int = 0) -> TrainingRecord | None:
    """Every photo the checkpoint in `folder` was trained on (see the module docstring); None
    when it keeps no training config."""
    folder = Path(folder)
    found = training_config(folder)
    if found is None:
        return None
    return _record(*found, folder, _depth)


def training_record_from_configs(paths: list[str | Path]) -> TrainingRecord:
    """The record of a checkpoint that keeps no training config of its own, from the training
    config files it was made with (stages in order; e.g. the bundled demo's configs/demo.json and
    configs/demo-inject.json, named in its model card). A stage's init_from is not followed: the
    files name the stages."""
    record = TrainingRecord(", ".join(str(p) for p in paths))
    for path in paths:
        path = Path(path)
        record = _merged(record, _record(json.loads(path.read_text()), str(path), path, 0, follow_init=False))
    return record


def _merged(earlier: TrainingRecord, later: TrainingRecord) -> TrainingRecord:
    """Two stages' records as one (later's source)."""
    return TrainingRecord(later.source, list(dict.fromkeys(earlier.images + later.images)),
                          list(dict.fromkeys(earlier.token_photos + later.token_photos)),
                          earlier.complete and later.complete, earlier.notes + later.notes)


def _record(config: dict, source: str, folder: Path, depth: int, follow_init: bool = True) -> TrainingRecord:
    record = TrainingRecord(source)
    data = config.get("data") or {}
    if "pairs" not in data:
        record.complete = False
        record.notes.append(f"trained on a data folder ({', '.join(sorted(data)) or 'none named'}), not listed photo by photo")
    listed = [("training photo", pair["image"], record.images) for pair in data.get("pairs", [])]
    listed += [("identity-pool photo", photo["path"], record.token_photos)
               for photo in (config.get("identity_pool") or {}).get("photos", [])]
    for what, path, into in listed:
        image = _resolve(path, folder)
        if image is None:
            record.complete = False
            record.notes.append(f"{what} {path} not found here")
        else:
            into.append(image)
    init = config.get("init_from") if follow_init else None
    if init:
        parent = _resolve(init, folder)
        earlier = None if parent is None or depth > 8 else training_record(parent, depth + 1)
        if earlier is None:
            record.complete = False
            record.notes.append(f"started from {init}, whose training record is not found")
        else:
            return _merged(earlier, record)
    return _merged(TrainingRecord(source), record)


def what_it_saw(descriptor: np.ndarray | None, record: TrainingRecord | None, judge,
                _cache: dict | None = None) -> SeenVerdict:
    """Whether the photo with dlib descriptor `descriptor` (judge.descriptor of the photo) or its
    person is in `record`, by dlib distance to every training photo (descriptors cached in
    `_cache` by path when given)."""
    if record is None:
        return SeenVerdict(None, None, None, None, "the checkpoint keeps no training config")
    if descriptor is None:
        return SeenVerdict(None, None, None, None, "dlib finds no face in the photo")
    from idface.images import load_image

    cache = {} if _cache is None else _cache
    best: dict[str, tuple[float, Path]] = {}
    for kind, paths in (("image", record.images), ("token", record.token_photos)):
        for path in paths:
            if path not in cache:
                cache[path] = judge.descriptor(load_image(path))
            if cache[path] is None:
                continue
            d = float(np.linalg.norm(cache[path] - descriptor))
            if kind not in best or d < best[kind][0]:
                best[kind] = (d, path)
    if "image" not in best and "token" not in best:
        return SeenVerdict(None, None, None, None, "no face found in its training photos")
    note = "" if record.complete else "; ".join(record.notes[:2]) + " (the record is incomplete)"
    image = best.get("image")
    token = best.get("token")
    photo = image is not None and image[0] < SAME_PHOTO_DISTANCE
    person = any(b is not None and b[0] < SAME_PERSON_DISTANCE for b in (image, token))
    if not record.complete and not person:
        person = None                 # an unlisted stage may have had them
    if not record.complete and not photo:
        photo = None
    nearest = image or token
    return SeenVerdict(photo, person, nearest[1].name, nearest[0], note)


__all__ = ["SAME_PHOTO_DISTANCE", "TrainingRecord", "SeenVerdict", "training_config", "training_record",
           "training_record_from_configs", "checkpoint_folder", "what_it_saw"]
