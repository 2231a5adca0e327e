"""Concealment (the expensive call) cannot block generation or be flooded (issue 17: one /conceal
made a /generate wait 87 s; it shared the single generation slot and had no per-client limit).
It runs in its own concurrency slot, and GuardedQueue admits at most MAX_EXPENSIVE_PER_CLIENT per
client address and MAX_EXPENSIVE_PENDING in all, outside the queue's max_size."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from idface.ui.sessions import MAX_EXPENSIVE_PENDING, MAX_EXPENSIVE_PER_CLIENT, GuardedQueue, client_address


def fake_event(cid: str, host: str):
    return SimpleNamespace(concurrency_id=cid, request=SimpleNamespace(headers={}, client=SimpleNamespace(host=host)))


def guarded_queue(waiting: dict, running: list) -> GuardedQueue:
    q = GuardedQueue.__new__(GuardedQueue)  # admission only: no server, no threads
    q.event_queue_per_concurrency_id = {cid: SimpleNamespace(queue=evs) for cid, evs in waiting.items()}
    q.active_jobs = [running, None]
    q.idface_max_size = 3
    return q


def test_admission_rules():
    conceal = SimpleNamespace(concurrency_id="conceal")
    generate = SimpleNamespace(concurrency_id="model")
    me = SimpleNamespace(headers={}, client=SimpleNamespace(host="10.0.0.1"))
    q = guarded_queue({"conceal": [], "model": []}, [])
    assert q.admission_problem(conceal, me) is None
    q = guarded_queue({"conceal": [fake_event("conceal", "10.0.0.1")] * MAX_EXPENSIVE_PER_CLIENT}, [])
    message, state = q.admission_problem(conceal, me)
    assert state == "error" and "wait for it to finish" in message
    others = [fake_event("conceal", f"10.0.1.{i}") for i in range(MAX_EXPENSIVE_PENDING)]
    q = guarded_queue({"conceal": others[:-1]}, others[-1:])  # waiting and running both count
    message, state = q.admission_problem(conceal, me)
    assert state == "queue_full" and "busy" in message
    # a full concealment queue does not fill generation's queue, and vice versa
    assert q.admission_problem(generate, me) is None
    q = guarded_queue({"model": [fake_event("model", "x")] * 3}, [])
    assert q.admission_problem(generate, me)[1] == "queue_full"
    assert q.admission_problem(conceal, me) is None


def test_client_address_behind_a_proxy():
    req = SimpleNamespace(headers={"x-forwarded-for": "203.0.113.7, 10.0.0.2"}, client=SimpleNamespace(host="10.0.0.2"))
    assert client_address(req) == "203.0.113.7"
    assert client_address(SimpleNamespace(headers={}, client=SimpleNamespace(host="127.0.0.1"))) == "127.0.0.1"


@pytest.mark.slow
def test_generate_answers_while_a_conceal_runs_and_a_flood_is_refused(robust_app, faces_dir):
    from idface.testing.browser import BrowserSession

    url, demo = robust_app
    probe = BrowserSession(url)
    conceal_fn = next(d["id"] for d in probe.config["dependencies"] if d.get("api_name") == "conceal")
    generate_fn = next(d["id"] for d in probe.config["dependencies"] if d.get("api_name") == "generate")
    photo, target = probe.upload(faces_dir / "obama.jpg"), probe.upload(faces_dir / "biden.jpg")
    # the tightest starting budget (50 dB): the attack runs long, so generation overlaps it
    conceal_args = [photo, target, "impersonate", "photo", ["face"], ["dlib-resnet"], 50]

    first = BrowserSession(url)
    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("conceal", first.run(conceal_fn, conceal_args)))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not demo._queue.expensive_events("conceal") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert demo._queue.expensive_events("conceal"), "the first concealment never started"

        refused = []
        for _ in range(31):  # a flood from the same address, on fresh session ids
            probe.session_hash = uuid.uuid4().hex[:11]
            ok, text, _ = probe.run(conceal_fn, conceal_args)
            refused.append(not ok and "HTTP 400" in text and "wait for it to finish" in text)
        assert all(refused)

        start = time.perf_counter()
        probe.session_hash = uuid.uuid4().hex[:11]
        mask = probe.upload(faces_dir.parent / "masks" / sorted(p.name for p in (faces_dir.parent / "masks").glob("*.png")
                                                                 if not p.stem.endswith("_color"))[0])
        ok, out, _ = probe.run(generate_fn, [mask, photo, target, "identity", ""])
        seconds = time.perf_counter() - start
        still_concealing = bool(demo._queue.expensive_events("conceal"))
        print(f"/generate answered in {seconds:.2f} s while a /conceal was "
              f"{'still running' if still_concealing else 'finished'}; 31 more /conceal refused")
        assert ok, out
        assert still_concealing  # generation did not queue behind the concealment
    finally:
        worker.join(timeout=300)
        probe.close()
        first.close()
    assert done["conceal"][0], done["conceal"]
    print(f"the concealment ran {time.perf_counter() - start:.1f} s after the /generate started")
