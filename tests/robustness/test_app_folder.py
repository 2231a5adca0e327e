"""Disk: every file the app writes lives under its own folder (idface.ui.sessions.claim_app_folder),
a restart removes what a crashed run left there, the sweeper deletes old files Gradio does not
track, and one upload request cannot write more than MAX_UPLOAD_REQUEST (issue 17: 8 x 20 MB in
one request wrote 153 MB; uploads from before a crash were never deleted; two apps shared and
deleted each other's uploads)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from idface.ui.sessions import AppFolderSweeper, UploadBudget, app_folder

ROOT = Path(__file__).resolve().parents[2]


def test_two_ports_two_folders(monkeypatch):
    monkeypatch.delenv("IDFACE_APP_DIR", raising=False)
    assert app_folder(7860) != app_folder(7861)


def test_sweeper_deletes_old_untracked_files(tmp_path):
    old, new = tmp_path / "outputs" / "old.png", tmp_path / "uploads" / "abc" / "new.png"
    for f in (old, new):
        f.parent.mkdir(parents=True)
        f.write_bytes(b"x")
    os.utime(old, (time.time() - 100, time.time() - 100))
    assert AppFolderSweeper(tmp_path, frequency=1, age=50).sweep() == 1
    assert not old.exists() and new.exists()


def test_upload_budget_rules():
    budget = UploadBudget(None, per_request=30 << 20, per_client=50 << 20, window_s=60)
    scope = {"client": ("10.0.0.9", 1234)}
    assert budget.problem({}, scope)[0] == 411
    status, text = budget.problem({"content-length": str(8 * 20 << 20)}, scope)
    assert status == 413 and "per request" in text
    assert budget.problem({"content-length": str(25 << 20)}, scope) is None
    status, text = budget.problem({"content-length": str(26 << 20)}, scope)  # 51 MB from one client
    assert status == 429 and "try again later" in text
    assert budget.problem({"content-length": str(26 << 20)}, {"client": ("10.0.0.10", 1)}) is None


@pytest.mark.slow
def test_many_files_in_one_request_are_refused_before_writing(robust_app):
    url, demo = robust_app
    files = [("files", (f"part{i}.png", b"\0" * (20 << 20))) for i in range(8)]
    r = httpx.post(url + "gradio_api/upload", files=files, timeout=120)
    assert r.status_code == 413 and "per request" in r.text, r.text


def start_app(port: int, folder: Path, checkpoint: Path) -> subprocess.Popen:
    env = dict(os.environ, PORT=str(port), GRADIO_SERVER_PORT=str(port), IDFACE_APP_DIR=str(folder),
               IDFACE_CHECKPOINT=str(checkpoint), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.pop("GRADIO_TEMP_DIR", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise AssertionError("the app did not start")


@pytest.mark.slow
def test_restart_after_kill_removes_the_previous_runs_uploads(robust_checkpoint, tmp_path, faces_dir):
    from idface.testing import free_port

    folder, port = tmp_path / "app", free_port()
    proc = start_app(port, folder, robust_checkpoint)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/gradio_api/upload",
                       files={"files": ("visitor.jpg", (faces_dir / "biden.jpg").read_bytes())}, timeout=60)
        uploaded = Path(r.json()[0])
        assert uploaded.exists() and folder in uploaded.parents  # the upload lives in the app's folder
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert uploaded.exists()  # a crash leaves it behind...
    proc = start_app(port, folder, robust_checkpoint)
    try:
        assert not uploaded.exists()  # ...and the next start on this folder removes it
    finally:
        proc.terminate()
        proc.wait(timeout=30)
