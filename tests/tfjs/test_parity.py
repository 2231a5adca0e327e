"""The PyTorch port of each network matches TensorFlow.js itself (pure-JS CPU backend, in node) on
the six bundled faces: max abs difference <= 1e-4 on every output. Inputs are what idface feeds
each network (the recognizers' own preprocessing), cut from the aligned faces in assets/train.

The landmark and segmentation graphs (for face parsing) output pixel coordinates up to ~180 and
logits up to ~20, where float32 rounding alone (summation order) reaches 1e-4: for them the bound
is 1e-5 of the output's largest magnitude when that is above 1e-4 (measured: facemesh 1.4e-4 at
scale 177, meet 1.3e-4 at scale 21; every recognizer stays under 1e-4 absolute)."""

import json
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from idface.faces.align import frame_to_template

pytestmark = pytest.mark.slow

FACES = ["obama", "obama2", "obama3", "biden", "astronaut", "grace_hopper"]
TOLERANCE = 1e-4
RECOGNIZERS = ("faceres", "faceres-deep", "mobileface", "mobilefacenet")


@pytest.fixture(scope="module")
def frames(faces_dir):
    """The six faces in the generator frame: [6, 3, 256, 256] in [0, 1]."""
    train = faces_dir.parent / "train"
    arrays = [np.asarray(Image.open(train / f"{name}.png").convert("RGB")) for name in FACES]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def _resized(frames, h, w):
    return F.interpolate(frames, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def _inputs(name, frames, net):
    """[6, H, W, 3] float32: the network's input for the six faces."""
    if name in ("faceres", "faceres-deep"):
        from idface.identity.hse_faceres import graph_input

        return graph_input(frame_to_template(frames, "dlib", 224))
    if name == "mobileface":  # ArcFace crop, RGB 0..255 (the graph normalises itself)
        return frame_to_template(frames, "arcface").permute(0, 2, 3, 1) * 255
    if name == "mobilefacenet":
        return (frame_to_template(frames, "arcface").permute(0, 2, 3, 1) * 255 - 127.5) / 128
    _, h, w, _ = net.nodes[net.input_name].attrs["shape"]  # the graph's own input size
    x = _resized(frames, h, w).permute(0, 2, 3, 1)
    return x * 2 - 1 if name.startswith(("blazeface", "facemesh-detection")) else x


def _tfjs(script, json_path, x, outputs, tmp_path):
    x = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
    x.tofile(tmp_path / "in.f32")
    proc = subprocess.run(["node", str(script), str(json_path), str(tmp_path / "in.f32"),
                           ",".join(map(str, x.shape)), str(tmp_path / "out"), ",".join(outputs)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((tmp_path / "out" / "outputs.json").read_text())
    return {m["name"]: np.fromfile(tmp_path / "out" / f"{i}.f32", np.float32).reshape(m["shape"])
            for i, m in enumerate(meta)}


@pytest.mark.parametrize("name", [*RECOGNIZERS, "blazeface", "blazeface-front", "blazeface-back", "facemesh",
                                  "facemesh-detection-short", "facemesh-detection-full", "iris", "selfie", "meet"])
def test_port_matches_tfjs_on_real_faces(name, frames, human_models, node_reference, tmp_path):
    from idface.tfjs import load_graph_model

    net = load_graph_model(name)
    x = _inputs(name, frames, net)
    ref = _tfjs(node_reference, human_models / "models" / f"{name}.json", x, net.default_outputs, tmp_path)
    with torch.no_grad():  # one face at a time: some graphs (blazeface, facemesh) fix batch 1
        ours = [net(x[i:i + 1]) for i in range(len(FACES))]
    for out in net.default_outputs:
        got = torch.cat([o[out] for o in ours]).numpy()
        assert got.shape == ref[out].shape, out
        err = float(np.abs(got - ref[out]).max())
        scale = float(np.abs(ref[out]).max())
        bound = TOLERANCE if name in RECOGNIZERS else max(TOLERANCE, 1e-5 * scale)
        assert err <= bound, f"{name} {out}: max abs {err:.2e} > {bound:.1e} (output scale {scale:.3g})"


def test_recognizer_descriptor_varies_across_faces(frames, human_models):
    """Parity on a constant network would prove nothing: the faceres descriptors of different
    faces differ by far more than the tolerance."""
    from idface.tfjs import load_graph_model
    from idface.identity.hse_faceres import OUTPUT_NODE, graph_input

    net = load_graph_model("faceres")
    with torch.no_grad():
        d = net(graph_input(frame_to_template(frames, "dlib", 224)), outputs=[OUTPUT_NODE])[OUTPUT_NODE]
    assert torch.cdist(d, d).fill_diagonal_(1e9).min() > 1.0
