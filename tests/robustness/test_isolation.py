"""One visitor's uploads, faces and outputs never reach another visitor; a visitor's session is
freed when they leave; uploaded files are deleted on the app's schedule.

Two concurrent gradio_client clients on /generate, and two concurrent "browser" sessions speaking
the page's own protocol (idface.testing.browser.BrowserSession), each with different faces. Each must
get results computed from its own inputs only. The app runs in this process, so the server-side
session store (demo.state_holder) is inspected directly. Uploads deleted on schedule: see
test_upload_deletion.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from idface.engine import generate_from_photos

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FACES = ROOT / "assets" / "faces"
MASK = ROOT / "assets" / "masks" / "drawn_face.png"
PAIRS = {"A": ("obama.jpg", "biden.jpg"), "B": ("grace_hopper.jpg", "astronaut.png")}


def _reference(value: float, other: float) -> None:
    assert value == pytest.approx(other, abs=1e-3)


@pytest.fixture(scope="module")
def expected(robust_engine):
    """Per pair: the dlib style-vs-identity score and the aligned style/identity crops, computed
    directly with the engine (alignment and embeddings are deterministic)."""
    out = {}
    for key, (style, identity) in PAIRS.items():
        gen, s, i = generate_from_photos(robust_engine, str(MASK), str(FACES / style), str(FACES / identity))
        out[key] = {"style_vs_identity": gen.scores["recognizers"]["dlib-resnet"]["style_vs_identity"],
                    "style_aligned": s.aligned, "identity_aligned": i.aligned}
    # the two pairs must be told apart by the number the test checks
    assert abs(out["A"]["style_vs_identity"] - out["B"]["style_vs_identity"]) > 0.05
    return out


def test_two_concurrent_api_clients_get_results_from_their_own_faces(robust_app, expected):
    url, _ = robust_app
    barrier = threading.Barrier(2)

    def visitor(key):
        style, identity = PAIRS[key]
        client = Client(url, verbose=False, download_files=True)
        barrier.wait()
        results = []
        for _ in range(3):
            path, scores = client.predict(mask_file=handle_file(str(MASK)), style_file=handle_file(str(FACES / style)),
                                          identity_file=handle_file(str(FACES / identity)), api_name="/generate")
            results.append((path, scores))
        client.close()
        return results

    with ThreadPoolExecutor(2) as pool:
        got = dict(zip(PAIRS, pool.map(visitor, PAIRS)))
    paths = {key: [p for p, _ in res] for key, res in got.items()}
    assert not set(paths["A"]) & set(paths["B"]), "two visitors were handed the same output file"
    for key, other in (("A", "B"), ("B", "A")):
        for _, scores in got[key]:
            s = scores["recognizers"]["dlib-resnet"]["style_vs_identity"]
            _reference(s, expected[key]["style_vs_identity"])
            assert abs(s - expected[other]["style_vs_identity"]) > 0.05


def _download(session, file_data) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    url = file_data.get("url") or (session.url + "gradio_api/file=" + file_data["path"])
    r = session.http.get(url)
    r.raise_for_status()
    return np.asarray(Image.open(BytesIO(r.content)).convert("RGB"))


def test_session_state_belongs_to_its_visitor(robust_app, expected):
    from idface.testing.browser import BrowserSession

    from idface.ui.maskcodec import encode_label_map
    from idface.images import load_mask

    url, demo = robust_app
    sessions = {key: BrowserSession(url) for key in PAIRS}
    prep_style = sessions["A"].fn_index("style_in", "change")
    prep_identity = sessions["A"].fn_index("identity_in", "change")
    regenerate = sessions["A"].fn_index("mask_editor", "input")
    mask_text = encode_label_map(load_mask(MASK, size=256))
    barrier = threading.Barrier(2)

    def visitor(key):
        s = sessions[key]
        style, identity = PAIRS[key]
        barrier.wait()
        ok1, out1, _ = s.run(prep_style, [s.upload(FACES / style)])
        ok2, out2, _ = s.run(prep_identity, [s.upload(FACES / identity)])
        ok3, out3, _ = s.run(regenerate, [mask_text, None, None, "identity", [], "identity"])
        assert ok1 and ok2 and ok3, (out1, out2, out3)
        return out1, out2, out3

    try:
        with ThreadPoolExecutor(2) as pool:
            got = dict(zip(PAIRS, pool.map(visitor, PAIRS)))
        for key in PAIRS:
            style_out, identity_out, gen_out = got[key]
            # the crops shown to each visitor are their own faces
            assert np.array_equal(_download(sessions[key], style_out[2]), expected[key]["style_aligned"])
            assert np.array_equal(_download(sessions[key], identity_out[2]), expected[key]["identity_aligned"])
            assert gen_out[0] is not None, gen_out[5]
            # server side: each session's gr.State holds that visitor's faces and generation
            held = [v for v in demo.state_holder[sessions[key].session_hash].state_data.values() if v is not None]
            aligned = [v.aligned for v in held if hasattr(v, "aligned")]
            assert len(aligned) == 2
            assert np.array_equal(aligned[0], expected[key]["style_aligned"]) or np.array_equal(
                aligned[1], expected[key]["style_aligned"])
            other = "B" if key == "A" else "A"
            assert not any(np.array_equal(a, expected[other]["style_aligned"]) for a in aligned)
            gens = [v for v in held if hasattr(v, "scores")]
            assert len(gens) == 1
            _reference(gens[0].scores["recognizers"]["dlib-resnet"]["style_vs_identity"],
                       expected[key]["style_vs_identity"])

        # a third visitor who prepared nothing sees nobody's faces, even when sending something
        # in the state slots (the server reads gr.State from its own session store, never from
        # the request)
        newcomer = BrowserSession(url)
        for forged in (None, {"aligned": "x"}, sessions["A"].session_hash):
            ok, out, _ = newcomer.run(regenerate, [mask_text, forged, forged, "identity", [], "identity"])
            assert ok and out[0] is None and "Pick a style face" in out[5]
        newcomer.close()
    finally:
        for s in sessions.values():
            s.close()


def test_session_freed_when_visitor_leaves(robust_app):
    """The page keeps a heartbeat connection open; when it drops (tab closed), the app's unload
    handler removes that visitor's whole session at once."""
    from idface.testing.browser import BrowserSession

    url, demo = robust_app
    s = BrowserSession(url)
    stop = threading.Event()

    def heartbeat():
        with s.http.stream("GET", s.url + f"gradio_api/heartbeat/{s.session_hash}") as stream:
            for _ in stream.iter_lines():
                if stop.is_set():
                    break  # leaving the block closes the connection, as closing the tab does

    t = threading.Thread(target=heartbeat, daemon=True)
    t.start()
    ok, out, _ = s.run(s.fn_index("style_in", "change"), [s.upload(FACES / "obama.jpg")])
    assert ok and out[2] is not None
    holder = demo.state_holder
    assert any(v is not None for v in holder[s.session_hash].state_data.values())
    stop.set()
    t.join(timeout=10)
    deadline = time.time() + 15
    while s.session_hash in holder and time.time() < deadline:
        time.sleep(0.2)
    s.close()
    assert s.session_hash not in holder, "the session outlived its visitor"


def test_pipeline_caches_are_keyed_by_content_and_bounded(robust_engine, expected):
    """The generator's style-code cache can only answer with codes of identical pixels, and holds
    at most cache_size entries however many faces pass through."""
    from idface.images import load_mask

    pipe = robust_engine.pipeline
    lm = load_mask(MASK, size=256)
    a = pipe.encode_style(expected["A"]["style_aligned"], lm)
    b = pipe.encode_style(expected["B"]["style_aligned"], lm)
    assert a.key != b.key and not np.allclose(a.codes.numpy(), b.codes.numpy())
    again = pipe.encode_style(expected["A"]["style_aligned"].copy(), lm)
    assert again.key == a.key and np.array_equal(again.codes.numpy(), a.codes.numpy())
    rng = np.random.default_rng(0)
    for _ in range(pipe.style_cache.maxsize + 5):
        pipe.encode_style(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), lm)
    assert len(pipe.style_cache.data) == pipe.style_cache.maxsize
