"""The README's Python blocks run as written, from a folder outside the repository (so `idface`
comes from the installed package, not from the current directory). The folder holds only a link
to assets/, the example photos the snippets name. A block that talks to the app (gradio_client)
runs against `python app.py` launched for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from idface.testing import app_process

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
APP_URL = "http://127.0.0.1:7860"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IDFACE_CHECKPOINT")}
    return dict(env, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")


@pytest.fixture
def outside(tmp_path) -> Path:
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    return tmp_path


def run_block(code: str, folder: Path) -> None:
    script = folder / "snippet.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=folder, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"README block failed:\n{code}\n{proc.stderr[-3000:]}"


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3 and any("from idface import" in b for b in BLOCKS)


def test_the_package_imports_from_outside_the_repository(outside):
    (block,) = [b for b in BLOCKS if b.startswith("from idface import Engine")]
    run_block(block, outside)


@pytest.mark.slow
@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS)
                                   if "Client(" not in b and not b.startswith("from idface import Engine")])
def test_library_block_runs(index, outside):
    run_block(BLOCKS[index], outside)


@pytest.mark.slow
def test_api_block_runs_against_the_app(outside):
    (block,) = [b for b in BLOCKS if "Client(" in b]
    with app_process(_env(), cwd=outside) as (url, _):
        run_block(block.replace(APP_URL, url.rstrip("/")), outside)
