"""Load test of the demo app over loopback: N simulated visitors for a bounded time.

    .venv/bin/python scripts/load_test.py                       # launch the app, 8 visitors, 60 s
    .venv/bin/python scripts/load_test.py --visitors 8,32 --duration 60
    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:7860 --pid 1234   # attach
    .venv/bin/python scripts/load_test.py --visitors 8 --conceal 8   # plus 8 /conceal callers

Visitors alternate between two kinds, so both ways into the server are loaded:
  api      gradio_client on the public /generate endpoint: each request uploads a style photo, an
           identity photo (rotating through assets/faces) and a mask PNG with a fresh random brush
           stroke (an "edited mask");
  browser  the page's own protocol (upload, /queue/join, /queue/data) on the private events the
           page fires: prepare the style and identity faces (kept in that visitor's gr.State),
           then mask edits (each a stroke in the editor's wire format) regenerating the face.
With --conceal K, K more visitors call the public /conceal endpoint (photo mode, dlib attacked),
each from its own client address (X-Forwarded-For), again and again: the app admits a bounded
number at a time and refuses the rest at once (counted as "refused", not as errors), and the
report shows what that does to /generate and the page's edits beside them.
Every visitor stops starting requests at the deadline and waits for the ones in flight (bounded by
--request-timeout), so the run ends by itself. The server runs in its own process; its RSS is
sampled every 0.2 s (psutil, else /proc). After the burst the script waits --idle seconds, asks
the server to gc (SIGUSR1, only when it launched the server) and reports idle RSS.

Prints requests served, errors (with the first messages), latency and queue-wait percentiles,
and peak / idle RSS. The --json report is written after every burst, and when the server dies
the report says so (with its exit status) instead of being lost. Nothing here is a test: numbers
are printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from idface.testing import free_port, make_plumbing_checkpoint
from idface.testing.browser import BrowserSession

ROOT = Path(__file__).resolve().parents[1]

FACES = sorted(p for p in (ROOT / "assets" / "faces").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
MASKS = sorted(p for p in (ROOT / "assets" / "masks").glob("*.png") if not p.stem.endswith("_color"))


# ---------------------------------------------------------------------------------------------
# server side


def serve(port: int, checkpoint: str | None, stats_file: str | None = None) -> None:
    """Run the app in this process (the launched mode): SIGUSR1 runs gc + malloc_trim and writes
    what the server holds (sessions, pipeline cache sizes, tracked temp files) to stats_file."""
    import ctypes
    import gc

    import app
    from idface.engine import Engine

    def collect(*_):
        gc.collect()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        if stats_file:
            holder = getattr(demo, "state_holder", None)
            stats = {
                "sessions_held": len(holder.session_data) if holder else None,
                "sessions_with_state": sum(any(v is not None for v in s.state_data.values())
                                           for s in holder.session_data.values()) if holder else None,
                "pipeline_caches": engine.pipeline.cache_info() if engine.pipeline else None,
                "temp_files_tracked": sum(len(t) for t in demo.temp_file_sets),
            }
            Path(stats_file).write_text(json.dumps(stats))

    signal.signal(signal.SIGUSR1, collect)
    engine = Engine(checkpoint=checkpoint, strict=False)
    demo = app.build_demo(engine, warm_examples=True)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, **app.LAUNCH_KWARGS)


def launch_server(checkpoint: str | None, env_extra: dict[str, str], stats_file: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", "--port", str(port), "--stats-file", stats_file]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **env_extra)
    proc = subprocess.Popen(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    url = f"http://127.0.0.1:{port}/"
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not answer within 300 s")


def rss_bytes(pid: int) -> int:
    """The process's RSS in bytes; 0 when it is gone."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return 0
    except Exception:  # psutil.NoSuchProcess and friends: the server died
        return 0
    return 0


class RssMonitor(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                rss = rss_bytes(self.pid)
            except Exception:
                break
            self.peak = max(self.peak, rss)
            self.samples.append((time.time(), rss))
            self.stop_event.wait(self.every)


# ---------------------------------------------------------------------------------------------
# visitors


def edited_mask(rng: random.Random) -> np.ndarray:
    """A bundled mask with one random brush stroke (a disc of a random class) painted in."""
    from idface.images import load_mask
    from idface.labels import NUM_CLASSES

    lm = load_mask(MASKS[rng.randrange(len(MASKS))], size=256).copy()
    k = rng.randrange(1, NUM_CLASSES)
    cx, cy, r = rng.randrange(256), rng.randrange(256), rng.randrange(3, 20)
    yy, xx = np.mgrid[:256, :256]
    lm[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = k
    return lm


@dataclass
class Record:
    kind: str
    what: str
    ok: bool
    latency: float
    queue_wait: float | None
    error: str = ""
    end: float = field(default_factory=time.time)  # when the answer came


@dataclass
class Stats:
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rec: Record) -> None:
        with self.lock:
            self.records.append(rec)


def api_visitor(url: str, deadline: float, rng: random.Random, stats: Stats, workdir: Path, timeout: float):
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    from idface.images import save_label_map

    client = Client(url, verbose=False, download_files=False)
    try:
        n = 0
        while time.time() < deadline:
            style, identity = rng.sample(FACES, 2)
            mask_path = workdir / f"mask{n % 2}.png"
            save_label_map(edited_mask(rng), mask_path, preview=False)
            start = time.perf_counter()
            wait = None
            try:
                job = client.submit(mask_file=handle_file(str(mask_path)), style_file=handle_file(str(style)),
                                    identity_file=handle_file(str(identity)), api_name="/generate")
                while not job.done():
                    if wait is None and job.status().code == Status.PROCESSING:
                        wait = time.perf_counter() - start
                    if time.perf_counter() - start > timeout:
                        raise TimeoutError(f"no answer in {timeout:.0f} s")
                    time.sleep(0.02)
                _, scores = job.result(timeout=5)
                ok = bool(scores.get("recognizers"))
                stats.add(Record("api", "generate", ok, time.perf_counter() - start, wait,
                                 "" if ok else "no recognizer scores"))
            except Exception as err:
                stats.add(Record("api", "generate", False, time.perf_counter() - start, wait,
                                 f"{type(err).__name__}: {str(err)[:200]}"))
            n += 1
    finally:
        client.close()


def conceal_visitor(url: str, deadline: float, rng: random.Random, stats: Stats, timeout: float, address: str):
    """Calls /conceal (photo mode, impersonation, dlib attacked) from one client address."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False, headers={"X-Forwarded-For": address})
    try:
        while time.time() < deadline:
            photo, target = rng.sample(FACES, 2)
            start = time.perf_counter()
            try:
                client.predict(handle_file(str(photo)), handle_file(str(target)), "impersonate", "photo",
                               ["face"], ["dlib-resnet"], 30, api_name="/conceal")
                stats.add(Record("api", "conceal", True, time.perf_counter() - start, None, ""))
            except Exception as err:
                text = str(err)
                refused = any(w in text for w in ("wait for it to finish", "server is busy", "400", "503"))
                stats.add(Record("api", "conceal refused" if refused else "conceal", refused,
                                 time.perf_counter() - start, None, "" if refused else f"{type(err).__name__}: {text[:200]}"))
                if refused:
                    time.sleep(1.0)  # a real client backs off
    finally:
        client.close()


def browser_visitor(url: str, deadline: float, rng: random.Random, stats: Stats, timeout: float, edits_per_face: int = 4):
    from idface.ui.maskcodec import encode_label_map

    session = BrowserSession(url, timeout)
    session.open_heartbeat()
    try:
        prep_style = session.fn_index("style_in", "change")
        prep_identity = session.fn_index("identity_in", "change")
        regenerate = session.fn_index("mask_editor", "input")

        def call(what, fn, data, check):
            start = time.perf_counter()
            try:
                ok, out, wait = session.run(fn, data)
                error = "" if ok else str(out)
                if ok:
                    error = check(out)
                    ok = not error
            except Exception as err:
                ok, wait, error = False, None, f"{type(err).__name__}: {str(err)[:200]}"
            stats.add(Record("browser", what, ok, time.perf_counter() - start, wait, error))
            return ok

        def face_ok(out):  # [state, message, crop]
            return "" if out[2] is not None else f"no face: {out[1]}"

        def gen_ok(out):  # generated, mask, attention, bars, download, status, state
            status = str(out[5] or "")
            return "" if out[0] is not None or "no checkpoint" in status.lower() or "No generator" in status else status[:200]

        while time.time() < deadline:
            style, identity = rng.sample(FACES, 2)
            if not call("prepare", prep_style, [session.upload(style)], face_ok):
                continue
            if not call("prepare", prep_identity, [session.upload(identity)], face_ok):
                continue
            for _ in range(edits_per_face):
                if time.time() >= deadline:
                    break
                call("edit", regenerate, [encode_label_map(edited_mask(rng)), None, None, "identity", [], "identity"],
                     gen_ok)
    finally:
        session.close()


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(a, q)), 3) for q in (50, 90, 99)} | {"max": round(float(a.max()), 3)}


def run_burst(url: str, pid: int | None, visitors: int, duration: float, timeout: float, seed: int,
              conceal: int = 0) -> dict:
    stats = Stats()
    monitor = RssMonitor(pid) if pid else None
    rss_before = rss_bytes(pid) if pid else None
    if monitor:
        monitor.start()
    deadline = time.time() + duration
    threads = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(visitors):
            rng = random.Random(seed * 1000 + i)
            if i % 2 == 0:
                workdir = Path(tmp) / f"v{i}"
                workdir.mkdir()
                t = threading.Thread(target=api_visitor, args=(url, deadline, rng, stats, workdir, timeout), daemon=True)
            else:
                t = threading.Thread(target=browser_visitor, args=(url, deadline, rng, stats, timeout), daemon=True)
            threads.append(t)
            t.start()
            time.sleep(0.05)  # visitors arrive over a moment, not in the same millisecond
        for i in range(conceal):
            rng = random.Random(seed * 1000 + visitors + i)
            t = threading.Thread(target=conceal_visitor, args=(url, deadline, rng, stats, timeout, f"198.51.100.{i + 1}"),
                                 daemon=True)
            threads.append(t)
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.time()) + timeout + 30)
    wall = time.time() - (deadline - duration)
    if monitor:
        monitor.stop_event.set()
        monitor.join()
    refused = [r for r in stats.records if r.what == "conceal refused"]  # admission said no, at once
    recs = [r for r in stats.records if r.what != "conceal refused"]
    errors = [r for r in recs if not r.ok]
    report = {
        "visitors": visitors,
        "conceal_visitors": conceal,
        "duration_s": duration,
        "wall_s": round(wall, 1),
        "requests": len(recs),
        "served": len(recs) - len(errors),
        "errors": len(errors),
        "conceal_refused": len(refused),
        "first_errors": sorted({f"{r.kind}/{r.what}: {r.error}" for r in errors})[:5],
        # served per second while requests were being answered (not counting visitors' goodbyes)
        "throughput_per_s": round((len(recs) - len(errors)) / max(1e-9, max((r.end for r in recs), default=0)
                                                                   - (deadline - duration)), 3) if recs else 0.0,
        "by_kind": {},
        "latency_s": percentiles([r.latency for r in recs if r.ok]),
        "queue_wait_s": percentiles([r.queue_wait for r in recs if r.ok and r.queue_wait is not None]),
        "unfinished_visitors": sum(t.is_alive() for t in threads),
    }
    for kind, what in sorted({(r.kind, r.what) for r in recs}):
        sel = [r for r in recs if r.kind == kind and r.what == what and r.ok]
        report["by_kind"][f"{kind}/{what}"] = {"served": len(sel), "latency_s": percentiles([r.latency for r in sel])}
    if pid:
        report["rss_mb"] = {"before": round(rss_before / 2**20, 1), "peak": round(monitor.peak / 2**20, 1)}
    return report


def idle_rss(pid: int, idle_s: float, stats_file: str | None) -> dict:
    time.sleep(idle_s)
    out = {"idle": round(rss_bytes(pid) / 2**20, 1)}
    if stats_file:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(2)
        out["idle_after_gc"] = round(rss_bytes(pid) / 2**20, 1)
        try:
            out["server_holds"] = json.loads(Path(stats_file).read_text())
        except (OSError, ValueError):
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--visitors", default="8", help="comma-separated visitor counts, one burst each (default 8)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds each burst starts new requests")
    ap.add_argument("--request-timeout", type=float, default=240.0, help="give up on one request after this")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds to wait after a burst before idle RSS")
    ap.add_argument("--url", help="attach to a running app instead of launching one (loopback only)")
    ap.add_argument("--pid", type=int, help="the attached server's pid, for its RSS")
    ap.add_argument("--checkpoint", help="generator checkpoint for the launched app (default: the app's resolver)")
    ap.add_argument("--plumbing", nargs="?", const="tiny", metavar="PRESET",
                    help="launch with random weights of a preset (default tiny; 'demo' costs what the demo model costs)")
    ap.add_argument("--max-queue", type=int, help="IDFACE_MAX_QUEUE for the launched app")
    ap.add_argument("--conceal", type=int, default=0, metavar="K",
                    help="also K visitors calling /conceal again and again, each from its own address")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--stats-file", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.serve:
        serve(args.port, args.checkpoint, args.stats_file)
        return 0

    proc, stats_file = None, None
    tmp = tempfile.TemporaryDirectory()
    if args.url:
        host = args.url.split("//", 1)[-1].split("/", 1)[0].split(":")[0]
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit("only a loopback app (127.0.0.1) may be load-tested")
        url, pid = args.url, args.pid
    else:
        checkpoint = args.checkpoint
        if args.plumbing:
            checkpoint = str(Path(tmp.name) / "plumbing")
            make_plumbing_checkpoint(Path(checkpoint), args.plumbing)
        env = {"IDFACE_MAX_QUEUE": str(args.max_queue)} if args.max_queue else {}
        started = time.time()
        stats_file = str(Path(tmp.name) / "server_stats.json")
        proc, url = launch_server(checkpoint, env, stats_file)
        pid = proc.pid
        print(f"server up at {url} (pid {pid}) in {time.time() - started:.0f} s, RSS {rss_bytes(pid) / 2**20:.0f} MB",
              flush=True)

    reports = []

    def save() -> None:  # after every burst, and whatever happens: a dead server loses nothing
        if args.json:
            Path(args.json).write_text(json.dumps(reports, indent=1))

    try:
        for n in [int(v) for v in args.visitors.split(",")]:
            print(f"--- {n} visitors{f' + {args.conceal} /conceal callers' if args.conceal else ''} "
                  f"for {args.duration:.0f} s ---", flush=True)
            report = run_burst(url, pid, n, args.duration, args.request_timeout, args.seed, args.conceal)
            if proc is not None and proc.poll() is not None:
                report["server_died"] = f"exit status {proc.returncode}"
            elif pid:
                report["rss_mb"].update(idle_rss(pid, args.idle, stats_file))
            reports.append(report)
            save()
            print(json.dumps(report, indent=1), flush=True)
            if report.get("server_died"):
                print(f"the server died during the burst ({report['server_died']}); stopping", flush=True)
                break
    finally:
        save()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        tmp.cleanup()
    return 0 if all(r["errors"] == 0 for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
