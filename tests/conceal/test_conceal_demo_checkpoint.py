"""The Conceal tab's generator modes on the bundled demo checkpoint (weights/idface-demo), which
learnt identity injection: a swap alone makes dlib-ResNet read the target, as produced and after
re-compression, and token optimisation reaches its goal within the budget."""

from __future__ import annotations

import cv2
import pytest

from idface.conceal import conceal
from idface.hub import WEIGHTS_DIR

pytestmark = pytest.mark.slow
DEMO = str(WEIGHTS_DIR / "idface-demo")


@pytest.fixture(scope="module")
def demo_pipeline():
    from idface.pipeline import IdFacePipeline

    return IdFacePipeline.from_pretrained(DEMO)


def test_swap_on_the_demo_checkpoint_reads_the_target(demo_pipeline, faces_dir):
    cv2.setRNGSeed(0)  # the offline parser's GrabCut draws from OpenCV's RNG
    result = conceal(faces_dir / "obama.jpg", faces_dir / "biden.jpg", goal="impersonate", mode="swap",
                     attack="dlib-resnet", pipeline=demo_pipeline)
    entry = result.report["recognizers"]["dlib-resnet"]
    assert entry["success"] and entry["recompressed"]["success"], entry
    assert entry["same_as_target"] and not entry["same_as_source"]
    assert result.report["psnr"] >= 22.0      # still the source face's look (vs its own-token output)


def test_token_mode_on_the_demo_checkpoint_dodges(demo_pipeline, faces_dir):
    cv2.setRNGSeed(0)
    result = conceal(faces_dir / "biden.jpg", None, goal="dodge", mode="token", attack="dlib-resnet",
                     pipeline=demo_pipeline, settings={"steps": 30, "max_seconds": 120})
    entry = result.report["recognizers"]["dlib-resnet"]
    assert entry["success"], (entry, result.report.get("stopped"))
    assert result.report["psnr"] >= 25.0
