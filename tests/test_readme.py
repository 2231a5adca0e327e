"""The README's Python blocks run as written, from a folder outside the repository (so `idface`
comes from the installed package, not from the current directory). The folder holds only a link
to assets/, the example photos the snippets name. A block that talks to the app (gradio_client)
runs against `python app.py` launched for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idface.testing import free_port

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
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=outside,
                              env=dict(_env(), GRADIO_SERVER_PORT=str(port)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        import httpx

        deadline = time.time() + 300
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/gradio_api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "the app did not answer within 300 s"
            time.sleep(0.5)
        run_block(block.replace(APP_URL, f"http://127.0.0.1:{port}"), outside)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
