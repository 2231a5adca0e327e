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


# `make test` (and so CI) installs every model the suite needs, so there a skip means something
# it installed is missing: IDFACE_TESTS_NO_SKIPS=1 turns each skip into a failure that names the
# reason. Without it (a checkout where npm or node is missing) the skips stay skips.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("IDFACE_TESTS_NO_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but IDFACE_TESTS_NO_SKIPS=1 (make test installs what it needs): {reason}"
