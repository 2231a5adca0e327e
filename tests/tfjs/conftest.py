"""Fixtures for the TFJS port: the pinned package's files (skip when not fetched) and the node
reference (skip when `npm ci` has not run in tools/tfjs-reference)."""

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tools" / "tfjs-reference"


@pytest.fixture(scope="session")
def human_models():
    from idface.weights.human_models import human_models_dir, human_models_status

    status = human_models_status()
    if status != "available":
        pytest.skip(status)
    return human_models_dir()


@pytest.fixture(scope="session")
def node_reference():
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (NODE_DIR / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        pytest.skip("tfjs reference not installed (make venv runs npm ci in tools/tfjs-reference)")
    return NODE_DIR / "run_graph.js"
