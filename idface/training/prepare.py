"""`python -m idface prepare --raw DIR --out DIR [--size 256] [--limit N]`

Converts the official CelebAMask-HQ release into idface training data:

    RAW/CelebA-HQ-img/<i>.jpg                                  1024x1024 photos
    RAW/CelebAMask-HQ-mask-anno/<i // 2000>/<i:05d>_<part>.png  512x512 per-part masks (white = part)
    RAW/CelebA-HQ-to-CelebA-mapping.txt   (optional) "idx orig_idx orig_file" per HQ image
    RAW/identity_CelebA.txt               (optional, from CelebA) "<orig_file> <identity>"

    OUT/images/<i:05d>.png    RGB at --size (Lanczos)
    OUT/labels/<i:05d>.png    uint8 class-index PNG at --size (nearest)
    OUT/index.csv             name, index, split, identity (-1 when unknown)
    OUT/prepared.json         size, counts, the split rule, failures

Part masks are merged in CelebAMask-HQ class order (idface.labels.CLASS_NAMES, background
first), each later class overwriting earlier ones where its mask is set: the dataset's own
tooling does the same, so e.g. eyeglasses painted before eyes leave the eyes on top.

Split (one deterministic rule): the images found are sorted by index, and the last
max(1, round(N * 2000 / 30000)) of them (none when N = 1) form the test split, the rest train. On the full release
(N = 30,000) that is exactly the common split: indices 0..27999 train, 28000..29999 test; on a
smaller set (or --limit N) it keeps the same 14:1 proportion, taking the highest indices as test.

Resumable: outputs are written atomically (temporary name, then rename) and an image whose two
outputs already exist is not converted again. A corrupt or missing input is reported with its
path and skipped; the counts are printed at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from idface.errors import InputError
from idface.labels import CLASS_NAMES

IMAGE_DIR = "CelebA-HQ-img"
MASK_DIR = "CelebAMask-HQ-mask-anno"
MAPPING_FILE = "CelebA-HQ-to-CelebA-mapping.txt"
IDENTITY_FILE = "identity_CelebA.txt"
IMAGES_PER_MASK_FOLDER = 2000
FULL_SIZE = 30_000
FULL_TEST = 2_000


def split_of(sorted_indices: list[int]) -> dict[int, str]:
    """index -> 'train' / 'test' by the rule in the module docstring."""
    n = len(sorted_indices)
    n_test = max(1, int(round(n * FULL_TEST / FULL_SIZE))) if n >= 2 else 0
    return {idx: ("test" if pos >= n - n_test else "train") for pos, idx in enumerate(sorted_indices)}


def find_images(raw: Path) -> list[tuple[int, Path]]:
    img_dir = raw / IMAGE_DIR
    if not img_dir.is_dir():
        raise InputError(f"{img_dir} not found: --raw must be the CelebAMask-HQ folder holding {IMAGE_DIR}/ and {MASK_DIR}/")
    if not (raw / MASK_DIR).is_dir():
        raise InputError(f"{raw / MASK_DIR} not found: --raw must hold the per-part masks folder {MASK_DIR}/")
    found = []
    for p in img_dir.iterdir():
        m = re.fullmatch(r"(\d+)\.(jpg|jpeg|png)", p.name, flags=re.IGNORECASE)
        if m:
            found.append((int(m.group(1)), p))
    found.sort()
    return found


def read_identities(mapping: Path | None, identities: Path | None) -> dict[int, int]:
    """HQ index -> CelebA identity, when both files are given; else {}."""
    if mapping is None or identities is None or not mapping.is_file() or not identities.is_file():
        return {}
    ident_of_file = {}
    for line in identities.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            ident_of_file[parts[0]] = int(parts[1])
    result = {}
    for line in mapping.read_text().splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit():
            continue  # header "idx orig_idx orig_file"
        if parts[2] in ident_of_file:
            result[int(parts[0])] = ident_of_file[parts[2]]
    return result


def part_mask_paths(raw: Path, index: int) -> dict[int, Path]:
    """class index -> existing per-part mask file of image `index` (classes without a file are absent)."""
    folder = raw / MASK_DIR / str(index // IMAGES_PER_MASK_FOLDER)
    out = {}
    for cls, name in enumerate(CLASS_NAMES):
        if cls == 0:
            continue  # background is what no part covers
        p = folder / f"{index:05d}_{name}.png"
        if p.is_file():
            out[cls] = p
    return out


def merge_part_masks(parts: dict[int, Path]) -> np.ndarray:
    """Merge per-part masks in class order (later classes win) -> uint8 [H, W] label map."""
    label_map = None
    for cls in sorted(parts):
        path = parts[cls]
        try:
            with Image.open(path) as img:
                arr = np.asarray(img.convert("L"))
        except Exception as err:
            raise InputError(f"corrupt mask {path}: {err}") from None
        if label_map is None:
            label_map = np.zeros(arr.shape, dtype=np.uint8)
        elif arr.shape != label_map.shape:
            raise InputError(f"mask {path} is {arr.shape[1]}x{arr.shape[0]}, other parts are {label_map.shape[1]}x{label_map.shape[0]}")
        label_map[arr > 127] = cls
    assert label_map is not None
    return label_map


def _atomic_save(img: Image.Image, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


@dataclass
class Job:
    index: int
    image_path: Path
    raw: Path
    out: Path
    size: int


def convert_one(job: Job) -> tuple[int, str]:
    """-> (index, '' on success | 'skipped' when already done | error message naming the path)."""
    name = f"{job.index:05d}.png"
    img_out = job.out / "images" / name
    lab_out = job.out / "labels" / name
    if img_out.is_file() and lab_out.is_file():
        return job.index, "skipped"
    parts = part_mask_paths(job.raw, job.index)
    if not parts:
        return job.index, f"missing masks: no {job.index:05d}_<part>.png in {job.raw / MASK_DIR / str(job.index // IMAGES_PER_MASK_FOLDER)}"
    try:
        with Image.open(job.image_path) as im:
            im.load()
            rgb = im.convert("RGB")
    except Exception as err:
        return job.index, f"corrupt image {job.image_path}: {type(err).__name__}: {err}"
    try:
        label_map = merge_part_masks(parts)
    except InputError as err:
        return job.index, str(err)
    s = job.size
    rgb = rgb.resize((s, s), Image.Resampling.LANCZOS)
    labels = Image.fromarray(label_map).resize((s, s), Image.Resampling.NEAREST)
    _atomic_save(rgb, img_out)
    _atomic_save(labels, lab_out)
    return job.index, ""


def prepare(raw: Path, out: Path, size: int = 256, limit: int | None = None, workers: int = 1,
            mapping: Path | None = None, identities: Path | None = None, progress: bool = True,
            log=print) -> dict:
    raw, out = Path(raw), Path(out)
    found = find_images(raw)
    if limit is not None:
        found = found[:limit]
    if not found:
        raise InputError(f"no images named <index>.jpg in {raw / IMAGE_DIR}")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    splits = split_of([i for i, _ in found])
    idents = read_identities(mapping or raw / MAPPING_FILE, identities or raw / IDENTITY_FILE)

    jobs = [Job(i, p, raw, out, size) for i, p in found]
    results: dict[int, str] = {}
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="prepare", unit="img", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for idx, status in pool.map(convert_one, jobs, chunksize=16):
                results[idx] = status
                if status not in ("", "skipped"):
                    tqdm.write(f"skipped: {status}", file=sys.stderr)
                bar.update(1)
    else:
        for job in jobs:
            idx, status = convert_one(job)
            results[idx] = status
            if status not in ("", "skipped"):
                tqdm.write(f"skipped: {status}", file=sys.stderr)
            bar.update(1)
    bar.close()

    ok = [i for i, _ in found if results[i] in ("", "skipped")]
    failures = {str(i): results[i] for i, _ in found if results[i] not in ("", "skipped")}
    with open(out / "index.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "index", "split", "identity"])
        for i in ok:
            writer.writerow([f"{i:05d}", i, splits[i], idents.get(i, -1)])
    summary = {
        "size": size,
        "found": len(found),
        "converted": sum(1 for i in ok if results[i] == ""),
        "already_done": sum(1 for i in ok if results[i] == "skipped"),
        "failed": len(failures),
        "train": sum(1 for i in ok if splits[i] == "train"),
        "test": sum(1 for i in ok if splits[i] == "test"),
        "with_identity": sum(1 for i in ok if i in idents),
        "split_rule": "images sorted by index; the last max(1, round(N*2000/30000)) are test (full release: 28000/2000)",
        "failures": failures,
    }
    (out / "prepared.json").write_text(json.dumps(summary, indent=2))
    log(
        f"prepared {len(ok)} of {len(found)} images into {out} "
        f"({summary['converted']} converted, {summary['already_done']} already done, {summary['failed']} skipped as corrupt/missing; "
        f"train {summary['train']}, test {summary['test']}, with identity {summary['with_identity']})"
    )
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw", required=True, type=Path, help="CelebAMask-HQ folder (holds CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; re-running resumes)")
    parser.add_argument("--size", type=int, default=256, help="output resolution (default 256)")
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N images (by index)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--mapping", type=Path, default=None, help=f"{MAPPING_FILE} (default: inside --raw)")
    parser.add_argument("--identities", type=Path, default=None, help=f"CelebA's {IDENTITY_FILE} (default: inside --raw)")


def run(args: argparse.Namespace) -> int:
    if args.size < 16:
        raise InputError(f"--size must be at least 16; got {args.size}")
    summary = prepare(args.raw, args.out, size=args.size, limit=args.limit, workers=args.workers,
                      mapping=args.mapping, identities=args.identities)
    return 0 if summary["converted"] + summary["already_done"] > 0 else 1
