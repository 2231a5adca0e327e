"""Test support shared by tests/ and scripts/ (installed with the package, so scripts never import
from tests/). Nothing in idface's library code imports this package.

- free_port(): a free loopback TCP port.
- app_process(env): `python app.py` on a free port, yielded once it answers, stopped after.
- make_plumbing_checkpoint(folder): a random-weight checkpoint of a preset (plumbing, not faces).
- benchmark_engine(checkpoint): the Engine a browser benchmark serves (the resolver's checkpoint, or a
  plumbing one when there is none; None with a message when a named checkpoint is missing).
- browser: the app driven as a browser does (Playwright pages, or the page's HTTP protocol).
- rawdata: a tiny data set in the CelebAMask-HQ release layout.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_plumbing_checkpoint(folder: str | Path, preset: str = "tiny", identity_gain: float = 1.0) -> None:
    """Random weights of a preset, saved as a checkpoint: every step runs at that preset's cost, the
    images are not faces. Zero-initialised layers (the attention output projections) get small
    noise, so the output depends on the style codes and the identity token as a trained model's
    does; identity_gain > 1 scales the identity projection's output layer so that different
    identities give visibly different outputs."""
    import torch

    from idface.model import IdFaceModel

    torch.manual_seed(0)
    model = IdFaceModel(preset)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0.0, 0.2)
        if identity_gain != 1.0:
            for p in model.identity_projection.mlp[-1].parameters():
                p.mul_(identity_gain)
    model.save_pretrained(folder)


@contextmanager
def app_process(env: dict[str, str], cwd: str | Path | None = None, timeout_s: float = 300.0):
    """Run `python app.py` (the installed module's file) on a free loopback port with `env`;
    yield (url, process) once the server answers; terminate it afterwards. The process's output
    (stdout and stderr together) is readable from process.stdout."""
    import httpx

    port = free_port()
    app_file = importlib.util.find_spec("app").origin
    env = {k: v for k, v in env.items() if k != "GRADIO_SERVER_NAME"}
    proc = subprocess.Popen([sys.executable, app_file], cwd=cwd, env=dict(env, GRADIO_SERVER_PORT=str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with {proc.returncode}: {proc.stdout.read()[-3000:]}")
            try:
                if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"the app did not answer within {timeout_s:.0f} s")
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def benchmark_engine(checkpoint: str | None):
    """The Engine a benchmark script serves: `checkpoint` as given, or the resolver's; when the
    resolver finds none, a tiny plumbing checkpoint (random weights) in a temporary folder, said so.
    A named checkpoint that cannot be loaded: its one-line message on stderr and None."""
    import tempfile

    from idface.engine import Engine
    from idface.errors import WeightsNotFoundError

    if checkpoint is None:
        engine = Engine()
        if engine.generator_ready:
            return engine
        checkpoint = tempfile.mkdtemp(prefix="idface-plumbing-")
        make_plumbing_checkpoint(checkpoint)
        print(f"no checkpoint found: using a tiny plumbing checkpoint (random weights) in {checkpoint}")
    try:
        return Engine(checkpoint=checkpoint)
    except WeightsNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return None
