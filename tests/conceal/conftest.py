"""Concealment test set-up: dlib itself as the independent judge of the attacks (the attacks use
the PyTorch port) and a tiny plumbing checkpoint for the generator modes."""

from __future__ import annotations

import pytest
from conceal_reference import DlibJudge

from idface.testing import make_plumbing_checkpoint


@pytest.fixture(scope="session")
def judge() -> DlibJudge:
    pytest.importorskip("dlib")
    return DlibJudge()


@pytest.fixture(scope="session")
def plumbing_pipeline(tmp_path_factory):
    from idface.pipeline import IdFacePipeline

    folder = tmp_path_factory.mktemp("conceal_plumbing_checkpoint")
    make_plumbing_checkpoint(folder, identity_gain=20.0)  # identities visibly steer the output
    return IdFacePipeline.from_pretrained(str(folder))
