"""Per-face fitting benchmark (idface.fitting) on photos, judged by dlib itself.

    .venv/bin/python scripts/bench_fit.py                        # the three photos below
    .venv/bin/python scripts/bench_fit.py --photos a.jpg b.jpg   # others
    .venv/bin/python scripts/bench_fit.py --sheet fit_sheet.png --json fit.json

Per photo: prepare it as the app does (detect, align, parse, embed), fit the base checkpoint to it
(wall time includes the preparation), then
- PSNR inside the face region at the model's resolution, base vs fitted (target >= 28 dB);
- dlib itself (dlib-bin: HOG detector, 5-point chip, ResNet; not idface's port) on the fitted
  reconstruction vs the photo (same person: distance < 0.6);
- a stroke after fitting: Engine.generate on an edited mask with the fitted checkpoint (generator
  pass + scores, median of 5; target <= 300 ms);
- four mask edits (grow hair, remove lips, remove brows, close mouth): mean |change| outside the
  painted region (beyond 6 px) vs inside (target: outside <= 1/4 inside), as every path shows
  them (the pipeline's local edits: near the change the edited rendering, elsewhere the unedited
  one; within 6 px at 128, so outside is 0 by construction: the contact sheet is the check) and
  the fitted generator's raw output (local_edits=False);
- injection after fitting: every ordered pair (A fitted, B's identity token): dlib reads B
  (distance < 0.57) and no longer A (>= 0.6), with B's token as projected and after the fitted
  copy practised it (idface.fitting.inject, as the app does), and the time that takes.
Then the memory of 32 fitted sessions (fp16 weight deltas and the engine's bounded materialised
copies, RSS growth in a fresh process; target < 2 GB) and a contact
sheet: photo | base | fitted | the edits as shown | the four edits raw | injections (projected,
practised).

Which photos and people the base checkpoint was trained on is read from its own records
(idface.evaluation.seen: the model card's training config, a training checkpoint's state, the run
folder's config; init_from followed; the bundled demo: configs/demo.json and demo-inject.json,
named in its card) and judged by dlib (same photo, same person); unknown when it keeps none. With
the bundled demo every default photo is one it trained on: astronaut and grace_hopper are
assets/train photos, and obama_podium is a crop of the same White House photo as obama2 (dlib
0.07; see assets/heldout/PROVENANCE.md), although through the app's preparation (detector
alignment, automatic parsing) the base reproduces them at 15-22 dB. Faces it never saw: a
checkpoint trained with them held out (configs/heldout.json, configs/heldout-inject.json).
--unseen-tokens keeps the benchmark photos' people out of every fit's foreign identities.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEFAULT_PHOTOS = [ROOT / "assets/faces/astronaut.png", ROOT / "assets/faces/grace_hopper.jpg",
                  ROOT / "assets/heldout/obama_podium.jpg"]
BENCH_EDITS = ("grow hair", "remove lips", "remove brows", "close mouth")
INJECTION_DISTANCE = 0.57


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_average() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def memory_of(folder: str, checkpoint: str | None) -> dict:
    """RSS growth of 32 sessions' fp16 deltas of the fitted checkpoint in `folder`, plus the
    engine's bounded materialised copies, in this (fresh) process."""
    import torch

    from idface.fitting import FittedFace, WeightDelta
    from idface.hub import resolve_checkpoint
    from idface.model import IdFaceModel
    from idface.pipeline import IdFacePipeline
    from idface.engine import MAX_FITTED_PIPELINES

    base = IdFaceModel.from_pretrained(str(resolve_checkpoint(checkpoint).path))
    model = IdFaceModel.from_pretrained(folder)
    template = WeightDelta.between(base, model)
    del model
    gc.collect()
    rss0 = rss_bytes()
    sessions = [FittedFace(f"s{i}", WeightDelta({k: v.clone() for k, v in template.diffs.items()}, template.config), {})
                for i in range(32)]
    pipes = [IdFacePipeline(s.delta.apply(base)) for s in sessions[:MAX_FITTED_PIPELINES]]
    gc.collect()
    rss1 = rss_bytes()
    assert pipes and torch.is_tensor(next(iter(sessions[0].delta.diffs.values())))
    return {"rss_mib": (rss1 - rss0) / 2**20, "delta_mib": template.nbytes / 2**20, "materialised": len(pipes)}


def fit_options(items: list[str]) -> dict:
    """--fit-option FIELD=VALUE items -> FitConfig keyword arguments (JSON values, lists as tuples)."""
    from dataclasses import fields

    from idface.fitting import FitConfig

    known = {f.name for f in fields(FitConfig)}
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--fit-option {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(known))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", nargs="+", default=[str(p) for p in DEFAULT_PHOTOS])
    parser.add_argument("--checkpoint", default=None,
                        help="base checkpoint: a folder (a run's final/, or a training checkpoint runs/X/checkpoints/step_N, "
                             "whose ema/ is used) or a Hub id; default: the resolver's, as the app")
    parser.add_argument("--training-config", nargs="+", default=None,
                        help="training configs of a checkpoint that keeps none of its own (stages in order); the bundled "
                             "demo's are configs/demo.json configs/demo-inject.json (its model card names them)")
    parser.add_argument("--unseen-tokens", action="store_true",
                        help="keep the benchmark photos' people out of every fit's foreign identities, so that each "
                             "injected token is one the fit never trained with")
    parser.add_argument("--max-seconds", type=float, default=18.0, help="fit time limit (0: none, --steps decide)")
    parser.add_argument("--steps", type=int, default=None,
                        help="generator steps (default FitConfig's); with --max-seconds 0 the quality a quiet machine "
                             "reaches in the time limit can be measured under load (wall times then are not the app's)")
    parser.add_argument("--fit-option", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a FitConfig field (JSON value; a list for tuples), e.g. ssim=0.5 or "
                             "'schedule=[\"photo\", \"edit\"]'; repeatable")
    parser.add_argument("--inject-also", default="faceres",
                        help="recognizers practised against besides the checkpoint's own (comma-separated; the app uses "
                             "every available one); the others are measured as transfer")
    parser.add_argument("--sheet", default=str(ROOT / "runs" / "bench_fit_sheet.png"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # internal: fresh-process memory check
    args = parser.parse_args(argv)
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of, args.checkpoint)))
        return 0
    from idface.evaluation.seen import checkpoint_folder

    if args.checkpoint and Path(args.checkpoint).is_dir():
        folder = checkpoint_folder(args.checkpoint)
        if folder != Path(args.checkpoint):
            print(f"{args.checkpoint} is a training checkpoint: its EMA model {folder} is the base")
        args.checkpoint = str(folder)

    import torch
    from PIL import Image

    from idface.evaluation.judge import SAME_PERSON_DISTANCE, DlibJudge
    from idface.evaluation.seen import training_record, training_record_from_configs, what_it_saw
    from eval_demo import locality
    from idface.bench import cpu_name
    from idface.faces import prepare_face
    from idface.fitting import FitConfig, WeightDelta, fit_prepared
    from idface.fitting.edits import EDITS, UNTRAINED_EDITS
    from idface.fitting.fit import OTHER_FACES, OTHER_FACES_DIR, embed, face_region, psnr_db, resize_image, resize_labels
    from idface.hub import resolve_checkpoint
    from idface.identity.registry import get_recognizer
    from idface.images import load_image
    from idface.model import IdFaceModel
    from idface.pipeline import IdFacePipeline
    from idface.engine import Engine, PreparedFace

    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores, shared with other jobs; load average at start "
          f"{load_average()}); torch {torch.__version__}")
    source = resolve_checkpoint(args.checkpoint)
    base = IdFaceModel.from_pretrained(str(source.path))
    recognizer = get_recognizer(base.config.identity_recognizer)
    judge = DlibJudge()
    size = base.config.image_size
    print(f"base checkpoint: {source.describe()}")
    # ---- which photos and people the base checkpoint was trained on (its own records) ----
    demo_configs = [ROOT / "configs" / "demo.json", ROOT / "configs" / "demo-inject.json"]
    if args.training_config:
        record = training_record_from_configs(args.training_config)
    else:
        record = training_record(source.path) if source.path is not None else None
        if record is None and source.kind == "bundled" and all(p.is_file() for p in demo_configs):
            record = training_record_from_configs(demo_configs)    # named in the bundled demo's model card
    if record is None:
        print("training data of the base checkpoint: unknown (it keeps no training config; name them with "
              "--training-config)")
    else:
        print(f"training data of the base checkpoint (from {record.source}): {len(record.images)} photos"
              + ("" if record.complete else f"; incomplete: {'; '.join(record.notes)}"))
    seen_cache: dict = {}
    photo_descs = {Path(p).stem: judge.descriptor(load_image(p)) for p in args.photos}
    seen = {name: what_it_saw(d, record, judge, seen_cache) for name, d in photo_descs.items()}
    for name, verdict in seen.items():
        print(f"  {name}: {verdict.describe()}")
    fit_configs = {}
    for name in photo_descs:
        excluded = ()
        if args.unseen_tokens:
            # the bundled faces of every benchmark photo's person: no fit trains with a token it is tested on
            bundled = {n: judge.descriptor(load_image(OTHER_FACES_DIR / f"{n}.png")) for n in OTHER_FACES
                       if (OTHER_FACES_DIR / f"{n}.png").is_file()}
            excluded = tuple(n for n, d in bundled.items() if d is not None and any(
                p is not None and np.linalg.norm(d - p) < SAME_PERSON_DISTANCE for p in photo_descs.values()))
        fit_configs[name] = FitConfig(max_seconds=args.max_seconds or None, exclude_faces=excluded,
                                      **({} if args.steps is None else {"steps": args.steps}), **fit_options(args.fit_option))
    if args.unseen_tokens:
        print(f"foreign identities kept out of every fit (the benchmark photos' people): "
              f"{', '.join(next(iter(fit_configs.values())).exclude_faces) or 'none'}")
    rows, fitted = [], []
    # the first preparation in a process loads the detector and parser (the app does this at
    # start): do it once before timing, so that every photo's wall time is its own work
    t_warm = time.perf_counter()
    prepare_face(load_image(args.photos[0]))
    print(f"warm-up (detector and parser loaded, not timed): {time.perf_counter() - t_warm:.1f} s")
    for path in args.photos:
        name = Path(path).stem
        rgb = load_image(path)
        photo_desc = photo_descs[name]
        t0 = time.perf_counter()
        face = prepare_face(rgb)
        emb = embed(recognizer, face.image).numpy()
        prep = time.perf_counter() - t0
        result = fit_prepared(base, face.image, face.label_map, emb, fit_configs[name], recognizer=recognizer,
                              base_label=source.describe(), started=t0)
        wall = time.perf_counter() - t0
        real = resize_image(face.image, size)
        lm = resize_labels(face.label_map, size)
        base_pipe = IdFacePipeline(base)
        fit_pipe = IdFacePipeline(result.model)
        before = base_pipe(lm, style=(face.image, face.label_map), identity_embedding=emb, attention=False).image
        after = fit_pipe(lm, style=(face.image, face.label_map), identity_embedding=emb, attention=False).image
        d_before = judge.descriptor(before)
        d_after = judge.descriptor(after)
        dist = lambda d: None if d is None or photo_desc is None else float(np.linalg.norm(d - photo_desc))  # noqa: E731
        edits = {}
        for title in BENCH_EDITS + tuple(UNTRAINED_EDITS):
            edited = {**EDITS, **UNTRAINED_EDITS}[title](lm)
            if not (edited != lm).any():
                edits[title] = None
                continue
            # what every path shows (the pipeline's local edits: composited over the unedited
            # rendering) and the fitted generator's own output (local_edits=False)
            out = fit_pipe(edited, style=(face.image, face.label_map), identity_embedding=emb, attention=False).image
            raw = fit_pipe(edited, style=(face.image, face.label_map), identity_embedding=emb, attention=False,
                           local_edits=False).image
            loc, loc_raw = locality(after, out, edited != lm), locality(after, raw, edited != lm)
            edits[title] = {"pixels": loc["changed_pixels"], "inside": loc["mean_change_inside"],
                            "outside": loc["mean_change_outside"],
                            "outside_over_inside": loc["mean_change_outside"] / max(loc["mean_change_inside"], 1e-6),
                            "raw_inside": loc_raw["mean_change_inside"], "raw_outside": loc_raw["mean_change_outside"],
                            "raw_outside_over_inside": loc_raw["mean_change_outside"] / max(loc_raw["mean_change_inside"], 1e-6),
                            "image": out, "raw_image": raw}
        row = {
            "photo": name, "prepare_s": prep, "fit_wall_s": wall, "code_steps": result.code_steps,
            "steps": result.steps, "stopped": result.stopped,
            "psnr_face_base": psnr_db(before, real, face_region(lm)), "psnr_face_fitted": psnr_db(after, real, face_region(lm)),
            "psnr_base": psnr_db(before, real), "psnr_fitted": psnr_db(after, real),
            "dlib_distance_base": dist(d_before), "dlib_distance_fitted": dist(d_after),
            "port_distance_fitted": result.identity_after, "stage_seconds": result.summary()["stage_seconds"],
            "load_average": load_average(),
            "base_saw": {"photo": seen[name].photo, "person": seen[name].person, "nearest": seen[name].nearest,
                         "distance": seen[name].distance, "verdict": seen[name].describe()},
            "edits": {k: (None if v is None else {kk: round(vv, 3) for kk, vv in v.items() if not kk.endswith("image")})
                      for k, v in edits.items()},
        }
        rows.append(row)
        fitted.append({"name": name, "result": result, "face": face, "emb": emb, "lm": lm, "real": real,
                       "before": before, "after": after, "edits": edits, "photo_desc": photo_desc})
        e = row["edits"]
        print(f"{name}: fit {wall:.1f} s wall (prepare {prep:.1f} s, {result.code_steps} code + {result.steps} "
              f"generator steps, {result.stopped}); face PSNR {row['psnr_face_base']:.1f} -> "
              f"{row['psnr_face_fitted']:.1f} dB; dlib distance to photo {row['dlib_distance_base']} -> "
              f"{row['dlib_distance_fitted']}; load {load_average()}", flush=True)
        print(f"    seconds per part: {row['stage_seconds']}")
        for title, v in e.items():
            if v:
                kind = "" if title in BENCH_EDITS else " [an edit kind fitting never trains on]"
                print(f"    {title} ({v['pixels']} px painted): shown (local edits) inside {v['inside']:.1f}, outside "
                      f"{v['outside']:.2f} (outside/inside {v['outside_over_inside']:.3f}); raw generator inside "
                      f"{v['raw_inside']:.1f}, outside {v['raw_outside']:.2f} ({v['raw_outside_over_inside']:.3f}){kind}")

    # ---- a stroke after fitting: the app's Engine with the fitted checkpoint, beside the base ----
    stroke_ms = {"fitted": [], "base": []}
    stroke_cpu_ms = {"fitted": [], "base": []}      # this process's CPU time (every thread): load-independent
    with tempfile.TemporaryDirectory() as tmp:
        item = fitted[0]
        item["result"].save(tmp)
        engines = {"fitted": Engine(checkpoint=tmp), "base": Engine(checkpoint=str(source.path))}
        style = PreparedFace(item["face"].image, item["face"].label_map, "", 1,
                             {n: embed(r, item["face"].image).numpy() for n, r in engines["base"].recognizers().items()})
        for engine in engines.values():
            engine.generate(EDITS["grow hair"](style.label_map), style, style)   # warm: codes, folded context
        for i in range(6):
            lm_i = EDITS[BENCH_EDITS[i % 4]](style.label_map)
            for kind, engine in engines.items():
                t, c = time.perf_counter(), time.process_time()
                engine.generate(lm_i, style, style)
                stroke_ms[kind].append(1000 * (time.perf_counter() - t))
                stroke_cpu_ms[kind].append(1000 * (time.process_time() - c))
    med = {k: statistics.median(v) for k, v in stroke_ms.items()}
    med_cpu = {k: statistics.median(v) for k, v in stroke_cpu_ms.items()}
    print(f"stroke (Engine.generate: generator pass + scores, {fitted[0]['name']}, interleaved, 6 each): fitted "
          f"median {med['fitted']:.0f} ms (max {max(stroke_ms['fitted']):.0f}), base checkpoint median "
          f"{med['base']:.0f} ms: ratio {med['fitted'] / med['base']:.2f}; CPU time (all threads) fitted median "
          f"{med_cpu['fitted']:.0f} ms, base {med_cpu['base']:.0f} ms; load {load_average()}")

    # ---- injection after fitting (and with the base checkpoint, for reference) ----
    # "projected": B's token as the identity path projects it, through the fitted weights (what
    # the fit alone gives); "practised": after the fitted copy practised B's token
    # (idface.fitting.inject, what the app and the CLI do before the first image with B)
    from idface.fitting.inject import InjectConfig, practise_identity

    inject_config = InjectConfig(**({"max_seconds": None} if args.max_seconds == 0 else {}))
    from idface.identity.registry import available_recognizers

    # the other recognizers (not probed while practising): transfer, each by its own rule
    others_rec = {n: get_recognizer(n) for n in available_recognizers() if n != base.config.identity_recognizer}
    probed = [n for n in args.inject_also.split(",") if n in others_rec]
    for item in fitted:
        item["other_emb"] = {n: embed(r, item["face"].image).numpy() for n, r in others_rec.items()}
    print(f"practising against {', '.join([base.config.identity_recognizer] + probed)}; transfer measured on "
          f"{', '.join(n for n in others_rec if n not in probed) or 'none'}")
    pairs, base_success = [], []
    for a in fitted:
        pipes = {"fitted": IdFacePipeline(a["result"].model), "base": IdFacePipeline(base)}
        region = face_region(a["lm"])
        for b in fitted:
            if a is b:
                continue
            t = time.perf_counter()
            practice = practise_identity(a["result"].model, recognizer, a["face"].image, a["face"].label_map,
                                         a["emb"], b["emb"], inject_config,
                                         also={n: (others_rec[n], a["other_emb"][n], b["other_emb"][n]) for n in probed})
            practice_s = time.perf_counter() - t
            pipes["practised"] = IdFacePipeline(practice.model)
            pair = {"fitted": a["name"], "token": b["name"], "practice_s": practice_s, "practice_steps": practice.steps}
            for kind, pipe in pipes.items():
                out = pipe(a["face"].label_map, style=(a["face"].image, a["face"].label_map),
                           identity_embedding=b["emb"], attention=False).image
                d = judge.descriptor(out)
                to_b = None if d is None else float(np.linalg.norm(d - b["photo_desc"]))
                to_a = None if d is None else float(np.linalg.norm(d - a["photo_desc"]))
                ok = to_b is not None and to_b < INJECTION_DISTANCE and to_a >= 0.6
                if kind == "base":
                    base_success.append(ok)
                    continue
                prefix = "" if kind == "fitted" else "practised_"
                pair.update({f"{prefix}dlib_to_token_person": to_b, f"{prefix}dlib_to_photo": to_a,
                             f"{prefix}success": ok, f"{prefix}image": out,
                             # does it still look like A: face PSNR against the fitted reconstruction
                             f"{prefix}psnr_face_to_fitted": psnr_db(out, a["after"], region)})
            transfer = {}
            for n, r in others_rec.items():
                g = embed(r, pair["practised_image"]).numpy()
                to_b_r, to_a_r = float(r.score(g, b["other_emb"][n])), float(r.score(g, a["other_emb"][n]))
                kind = r.score_kind
                transfer[n] = {f"{kind}_to_token_person": to_b_r, f"{kind}_to_photo": to_a_r,
                               "reads_token_person_not_photo": bool(r.is_same(to_b_r) and not r.is_same(to_a_r))}
            pair["practised_transfer"] = transfer
            pairs.append(pair)
            fmt = lambda v: "none" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"injection {a['name']} <- token of {b['name']}: projected token: dlib to token person "
                  f"{fmt(pair['dlib_to_token_person'])}, to photo {fmt(pair['dlib_to_photo'])} -> "
                  f"{'reads as the token person' if pair['success'] else 'no'}; practised ({practice.steps} steps, "
                  f"{practice_s:.1f} s): {fmt(pair['practised_dlib_to_token_person'])}, "
                  f"{fmt(pair['practised_dlib_to_photo'])} -> "
                  f"{'reads as the token person' if pair['practised_success'] else 'no'}; face PSNR to the fitted "
                  f"reconstruction {pair['practised_psnr_face_to_fitted']:.1f} dB; load {load_average()}", flush=True)
            for n, t in transfer.items():
                sb, sa = (v for k, v in t.items() if k.endswith(("_to_token_person", "_to_photo")))
                print(f"    {n} ({'practised against' if n in probed else 'transfer'}): {sb:.3f} to the token person, "
                      f"{sa:.3f} to the photo -> {'reads B, not A' if t['reads_token_person_not_photo'] else 'no'}")
    rate = sum(p["success"] for p in pairs) / max(1, len(pairs))
    practised_rate = sum(p["practised_success"] for p in pairs) / max(1, len(pairs))
    base_rate = sum(base_success) / max(1, len(base_success))

    # ---- memory: 32 fitted sessions as fp16 deltas, measured in a fresh process ----
    with tempfile.TemporaryDirectory() as tmp:
        fitted[0]["result"].save(tmp)
        import subprocess

        mem = json.loads(subprocess.run([sys.executable, __file__, "--memory-of", tmp] +
                                        (["--checkpoint", args.checkpoint] if args.checkpoint else []),
                                        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    print(f"32 fitted sessions (fresh process): {mem['delta_mib'] * 32:.1f} MiB of fp16 deltas "
          f"({mem['delta_mib']:.2f} MiB each) + {mem['materialised']} materialised fitted pipelines: "
          f"RSS +{mem['rss_mib']:.0f} MiB")

    # ---- summary ----
    walls = [r["fit_wall_s"] for r in rows]
    ratios = {key: [v[key] for r in rows for k, v in r["edits"].items() if v and k in BENCH_EDITS]
              for key in ("outside_over_inside", "raw_outside_over_inside")}
    untrained = {key: [v[key] for r in rows for k, v in r["edits"].items() if v and k not in BENCH_EDITS]
                 for key in ("outside_over_inside", "raw_outside_over_inside")}
    inside = [v["inside"] for r in rows for k, v in r["edits"].items() if v and k in BENCH_EDITS]
    print("\nsummary")
    never = [n for n, v in seen.items() if v.person is False]
    unknown = [n for n, v in seen.items() if v.person is None]
    print(f"  people the base checkpoint never saw: {', '.join(never) or 'none'}"
          + (f"; unknown for {', '.join(unknown)}" if unknown else "")
          + f"; photos it trained on: {', '.join(n for n, v in seen.items() if v.photo) or 'none'}")
    print(f"  fit wall: median {statistics.median(walls):.1f} s, max {max(walls):.1f} s (target <= 20 s; "
          f"first fit includes loading the anchor faces)")
    print(f"  face PSNR fitted: min {min(r['psnr_face_fitted'] for r in rows):.1f} dB (target >= 28); "
          f"base min {min(r['psnr_face_base'] for r in rows):.1f} dB")
    same = [r["dlib_distance_fitted"] is not None and r["dlib_distance_fitted"] < 0.6 for r in rows]
    print(f"  dlib same person as the photo: {sum(same)}/{len(same)}")
    for key, what in (("outside_over_inside", "shown (the pipeline's local edits, every path)"),
                      ("raw_outside_over_inside", "raw generator (local_edits=False)")):
        print(f"  edits, {what}: outside/inside max {max(ratios[key]):.3f}, median {statistics.median(ratios[key]):.3f} "
              f"(target <= 0.25); edit kinds never trained on ({', '.join(UNTRAINED_EDITS)}): max "
              f"{max(untrained[key]):.3f}, median {statistics.median(untrained[key]):.3f}")
    print(f"  edits: mean change inside the painted region (of 255; the same shown and raw) min "
          f"{min(inside):.1f}, median {statistics.median(inside):.1f}")
    print(f"  load average at the end {load_average()}")
    practice_s = [p["practice_s"] for p in pairs]
    print(f"  injection: {100 * practised_rate:.0f}% of {len(pairs)} ordered pairs after practising the token "
          f"(median {statistics.median(practice_s):.1f} s, max {max(practice_s):.1f} s; face PSNR to the fitted "
          f"reconstruction median {statistics.median(p['practised_psnr_face_to_fitted'] for p in pairs):.1f} dB), "
          f"{100 * rate:.0f}% with the projected token after fitting, {100 * base_rate:.0f}% with the base "
          "checkpoint (target >= 70%)")
    for n in others_rec:
        hits = sum(p["practised_transfer"][n]["reads_token_person_not_photo"] for p in pairs)
        print(f"  practised injection read by {n} ({'practised against' if n in probed else 'transfer: not practised against'}): "
              f"{hits}/{len(pairs)}")
    print(f"  stroke: fitted median {med['fitted']:.0f} ms wall, {med_cpu['fitted']:.0f} ms CPU; base {med['base']:.0f} ms "
          f"wall (target <= 300)")
    print(f"  memory: 32 sessions +{mem['rss_mib']:.0f} MiB RSS (target < 2048)")

    # ---- contact sheet ----
    tiles_rows = []
    for item in fitted:
        tiles = [item["real"], item["before"], item["after"]]
        tiles += [item["edits"][t]["image"] if item["edits"][t] else np.zeros_like(item["real"])
                  for t in BENCH_EDITS + tuple(UNTRAINED_EDITS)]
        tiles += [item["edits"][t]["raw_image"] if item["edits"][t] else np.zeros_like(item["real"])
                  for t in BENCH_EDITS]
        tiles += [p[k] for p in pairs if p["fitted"] == item["name"] for k in ("image", "practised_image")]
        tiles_rows.append(np.concatenate(tiles, 1))
    width = max(r.shape[1] for r in tiles_rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in tiles_rows], 0)
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.sheet)
    print(f"contact sheet: {args.sheet} (columns: photo | base | fitted | {' | '.join(BENCH_EDITS + tuple(UNTRAINED_EDITS))} "
          f"(as shown, local edits) | {' | '.join(BENCH_EDITS)} (raw generator) | per other photo: its token "
          "projected, then practised)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "cpu": cpu_name(), "rows": rows, "stroke_ms": stroke_ms, "stroke_cpu_ms": stroke_cpu_ms,
            "injection": [{k: v for k, v in p.items() if not k.endswith("image")} for p in pairs],
            "injection_rate": rate, "injection_rate_practised": practised_rate,
            "injection_rate_base": base_rate, "memory": mem,
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
