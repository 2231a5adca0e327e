"""prepare_face: one call from any photo to the generator frame, its label map and the transform."""

import numpy as np
import pytest

from idface.errors import InputError
from idface.faces import AlignedFace, crop_face, prepare_face
from idface.faces.align import paste_back


def test_prepare_face_fields(faces_dir):
    face = prepare_face(str(faces_dir / "astronaut.png"))
    assert isinstance(face, AlignedFace)
    assert face.image.shape == (256, 256, 3) and face.image.dtype == np.uint8
    assert face.label_map.shape == (256, 256) and face.label_map.dtype == np.uint8
    assert face.faces_found == 1 and face.message == "1 face found"
    assert face.transform.size == 256 and face.transform.image_size == (512, 512)
    back = paste_back(np.zeros((512, 512, 3), np.uint8), face.image, face.transform)
    x0, y0, x1, y1 = face.face.box.astype(int)
    assert back[y0:y1, x0:x1].mean() > 60  # the frame maps back onto the face


def test_prepare_face_512_and_size_errors(faces_dir):
    face = prepare_face(faces_dir / "obama.jpg", size=512, parse=False)
    assert face.image.shape == (512, 512, 3) and face.label_map is None
    with pytest.raises(InputError, match="256 or 512"):
        prepare_face(faces_dir / "obama.jpg", size=300)


def test_crop_face_for_each_consumer(faces_dir):
    for template, size in (("arcface", 112), ("dlib", 150), ("generator", 256)):
        crop, info = crop_face(faces_dir / "obama2.jpg", template)
        assert crop.shape == (size, size, 3) and info.faces_found == 1 and info.transform.template == template
