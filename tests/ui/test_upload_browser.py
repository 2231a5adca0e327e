"""A real browser uploads a style face: it is prepared once (Gradio fires the photo input's change
twice for one upload; the repeat must be a lookup and change nothing), the first face is generated
by the upload's own step from the new face's mask (unscored, no trip through the queue in between),
and the identity bars, the mask picture and the download follow in the next step."""

from __future__ import annotations

import numpy as np
import pytest

from idface.testing.browser import chromium_page, outputs_after, wait_ready


@pytest.mark.slow
def test_one_upload_prepares_once_generates_from_its_mask_then_scores(launched_app, plumbing_engine, faces_dir,
                                                                      tmp_path, monkeypatch):
    url, recorder = launched_app
    prepared, generated, scored = [], [], []
    prepare, generate, score_faces = plumbing_engine.prepare, plumbing_engine.generate, plumbing_engine.score_faces

    def counting_prepare(photo, what="face", **kwargs):
        face = prepare(photo, what, **kwargs)
        prepared.append((str(photo), face, dict(kwargs)))
        return face

    def counting_generate(label_map, style, *args, **kwargs):
        gen = generate(label_map, style, *args, **kwargs)
        generated.append((style, kwargs.get("score", True), gen))
        return gen

    def counting_score(style, identity, image=None):
        scored.append((style, image))
        return score_faces(style, identity, image)

    monkeypatch.setattr(plumbing_engine, "prepare", counting_prepare)
    monkeypatch.setattr(plumbing_engine, "generate", counting_generate)
    monkeypatch.setattr(plumbing_engine, "score_faces", counting_score)
    upload = tmp_path / "visitor.jpg"  # new bytes (not the bundled example's), same picture
    upload.write_bytes((faces_dir / "obama2.jpg").read_bytes() + b"\0")
    with chromium_page() as page:
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        wait_ready(page, url)
        page.wait_for_timeout(1000)  # the first visit's events are done
        n_prepared, n_generated, n_scored = len(prepared), len(generated), len(scored)
        started = page.evaluate("() => performance.now()")
        page.set_input_files("#style_in input[type=file]", str(upload))
        outputs_after(page, started)
        # the bars follow: a verdict for the generated face (the plumbing engine's recognizers)
        page.wait_for_selector("#identity_bars .idbar-verdict", timeout=60_000)
        page.wait_for_timeout(1500)  # let a repeated change event (if any) finish
        bars_text = page.inner_text("#identity_bars")
    assert not errors, errors
    visitor = [(face, kw) for path, face, kw in prepared[n_prepared:] if path.endswith("visitor.jpg")]
    assert len(visitor) == 1, f"the upload was prepared {len(visitor)} times"
    face, kwargs = visitor[0]
    assert kwargs.get("embed") is False  # no recognizer embeddings before the first image
    ours = [(score, gen) for style, score, gen in generated[n_generated:] if style is not None
            and style.aligned is face.aligned]
    assert len(ours) == 1, f"the upload generated {len(ours)} times"
    score, gen = ours[0]
    assert score is False  # generated in the upload's step, scored afterwards
    np.testing.assert_array_equal(recorder.label_maps[-1], face.label_map)  # the new face's own mask
    later = [image for style, image in scored[n_scored:] if style is not None and style.aligned is face.aligned]
    assert any(image is gen.image for image in later)  # the bars' step scored that very picture
    assert gen.scores is not None and set(face.embeddings) == set(plumbing_engine.recognizers())
    assert "Scoring" not in bars_text and "Generated face:" in bars_text
