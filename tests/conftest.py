"""Shared test set-up. The Hub is unreachable here: force offline mode before huggingface_hub
is imported anywhere, so no test waits on the network."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TQDM_DISABLE", "1")
# Every block folded, as before timing chose per stage: tests neither time the generator nor write
# a timing choice into weights/cache/; tests of the timed choice set IDFACE_FOLD=auto with a
# temporary IDFACE_CACHE_DIR (tests/model/test_fold_plan.py, tests/test_pipeline.py).
os.environ.setdefault("IDFACE_FOLD", "on")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "assets" / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FACES


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
