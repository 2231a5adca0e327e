"""Fixtures of the training tests: a tiny raw-layout data set and its prepared form."""

from pathlib import Path

import pytest

from idface.testing.rawdata import write_raw_dataset


@pytest.fixture(scope="session")
def raw_dataset(tmp_path_factory) -> Path:
    """16 procedural faces in the CelebAMask-HQ release layout; image 3 is a truncated JPEG."""
    return write_raw_dataset(tmp_path_factory.mktemp("raw"), n=16, corrupt=(3,))


@pytest.fixture(scope="session")
def prepared_64(raw_dataset, tmp_path_factory) -> Path:
    from idface.training.prepare import prepare

    out = tmp_path_factory.mktemp("prepared64")
    prepare(raw_dataset, out, size=64, progress=False, log=lambda *a: None)
    return out
