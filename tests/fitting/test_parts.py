"""The parts fitting is built from: its Adam, the per-thread thread count, the mask embedder's
localisation, the split generator run and the edit pool."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from idface.fitting.edits import UNTRAINED_EDITS, augmented_masks, random_blob_edit
from idface.fitting.fit import FitConfig, frozen_stages, resize_labels
from idface.fitting.locality import localise_mask_embedder
from idface.optim import Adam
from idface.threads import thread_local_torch_threads
from idface.model import IdFaceModel
from idface.tensors import onehot


def test_adam_matches_torch_optim_adam():
    torch.manual_seed(0)
    ours = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt_ours = Adam(ours, lr=0.05, betas=(0.9, 0.99))
    opt_theirs = torch.optim.Adam(theirs, lr=0.05, betas=(0.9, 0.99))
    for step in range(6):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            loss = (params[0].sin() ** 2).sum() + (params[1] * (step + 1)).cos().sum()
            loss.backward()
            opt.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_thread_count_changes_only_in_the_calling_thread():
    before = torch.get_num_threads()
    seen = {}
    inside, checked = threading.Event(), threading.Event()

    def fitting():
        with thread_local_torch_threads(1) as applied:
            seen["fitting"] = (applied, torch.get_num_threads())
            inside.set()
            checked.wait(10)
        seen["fitting after"] = torch.get_num_threads()

    def other():                                # a thread that starts using torch during the fit
        inside.wait(10)
        seen["other"] = torch.get_num_threads()
        checked.set()

    threads = [threading.Thread(target=fitting), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied, count = seen["fitting"]
    if applied:
        assert count == 1
    assert seen["other"] == before and seen["fitting after"] == before and torch.get_num_threads() == before


def test_localised_embedder_keeps_the_photo_and_stops_edits_spreading(aligned_face):
    import copy

    from idface.fitting.locality import edit_cells

    _, label = aligned_face
    torch.manual_seed(0)
    model = IdFaceModel("tiny")
    base = model.generator.mask_embedder
    embedder = copy.deepcopy(base)
    lm = resize_labels(label, model.config.image_size)
    rng = np.random.default_rng(0)
    edited = torch.cat([onehot(e) for _, e in augmented_masks(lm, rng, 6)] +
                       [onehot(random_blob_edit(lm, rng)) for _ in range(6)])
    photo = onehot(lm)
    report = localise_mask_embedder(embedder, photo, edited, steps=60)
    assert report["outside_after"] < 0.2 * report["outside_before"]
    assert report["photo_drift"] < 0.05

    # an edit of a kind it never trained on spreads less than with the base embedder too
    unseen = onehot(UNTRAINED_EDITS["bigger nose"](lm))
    outside = 1 - edit_cells((unseen != photo).any(1, keepdim=True), base.base)

    def spread(e) -> float:
        with torch.no_grad():
            return float(((e(unseen) - e(photo)) * outside).abs().mean())

    assert spread(embedder) < 0.7 * spread(base)


def test_split_generator_run_equals_the_whole(aligned_face):
    _, label = aligned_face
    torch.manual_seed(0)
    model = IdFaceModel("tiny")
    g = model.generator
    for block in g.transformer_blocks:
        block.proj_out.weight.data.normal_(0.0, 0.2)
    mask = onehot(resize_labels(label, model.config.image_size))
    context = torch.randn(1, model.config.num_tokens, model.config.code_dim)
    assert frozen_stages(g, FitConfig().frozen) == 1 and frozen_stages(g, ()) == 0
    with torch.no_grad():
        kv = g.fold_context(context)
        features = g.run_stages(g.mask_embedder(mask), kv, 0, 1)
        torch.testing.assert_close(g.run_stages(features, kv, 1), g(mask, context))


def test_edit_pool_is_random_and_changes_every_mask(aligned_face):
    _, label = aligned_face
    lm = resize_labels(label, 128)
    pool = augmented_masks(lm, np.random.default_rng(0), 10)
    assert len(pool) == 10 and all((e != lm).any() for _, e in pool)
    assert len({e.tobytes() for _, e in pool}) == 10
    other = augmented_masks(lm, np.random.default_rng(1), 10)
    assert {e.tobytes() for _, e in pool} != {e.tobytes() for _, e in other}


def test_gaussian_blur_keeps_flat_images_and_the_mean_and_removes_thin_lines():
    from idface.tensors import gaussian_blur

    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(gaussian_blur(flat, 2.0), flat, atol=1e-6)
    line = torch.zeros(1, 1, 32, 32)
    line[..., 16, :] = 1.0                                     # a one-pixel line (a glasses frame at 128 px)
    blurred = gaussian_blur(line, 2.0)
    assert abs(float(blurred.sum()) - 32.0) < 1e-3            # the change is spread, not lost
    assert float(blurred.max()) < 0.25                         # its peak is gone


def test_injection_loss_pushes_away_from_the_photo_only_while_it_still_reads_as_the_photo(aligned_face, dlib_port):
    from idface.fitting import losses as L
    from idface.fitting.fit import embed, to_model_tensor

    image = aligned_face[0]
    fake = to_model_tensor(image).requires_grad_(True)        # [1, 3, S, S]: reads as the photo itself
    own = embed(dlib_port, image)[None]                        # [1, D]
    other = torch.roll(own, 1, dims=1)                         # some other embedding
    pull = L.injection_loss(dlib_port, fake, other, own, pull=1.0, away=0.0)
    both = L.injection_loss(dlib_port, fake, other, own, pull=1.0, away=1.0, margin=0.1)
    # the photo's own embedding is at distance ~0: the hinge adds about threshold + margin
    assert float((both - pull).detach()) == pytest.approx(dlib_port.threshold + 0.1, abs=0.05)
    grad, = torch.autograd.grad(both - pull, fake)
    assert float(grad.abs().sum()) > 0
    far = L.injection_loss(dlib_port, fake, other, other * 10, pull=0.0, away=1.0)   # already far from "the photo"
    assert float(far.detach()) == 0.0
