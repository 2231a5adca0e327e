"""One interface for every face recognition model: the app's identity bars, the identity token,
the identity loss, concealment and evaluation all go through it.

A Recognizer knows its input template (idface.faces.align), its embedding size, how to compare
two embeddings (`score`) and its own same-person rule (`is_same`, `threshold`, with the source of
the threshold). `higher_is_more_similar` tells whether `score` is a similarity (cosine) or a
distance (dlib's Euclidean rule).

Three ways in:
- embed_aligned(chips [B, 3, S, S] in [0, 1])  differentiable, chips already on the template;
- embed_frame(images [B, 3, H, H] in [0, 1])   differentiable, images in the GENERATOR's frame
                                               (what the generator outputs), warped with grid_sample;
- embed_photo(photo)                           any photo: decode, detect, align, embed -> (embedding
                                               [D] numpy, FaceInfo); not differentiable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np
import torch

from idface.errors import InputError
from idface.faces.align import frame_to_template

if TYPE_CHECKING:
    from idface.faces import FaceInfo


def score_kind(higher_is_more_similar: bool) -> str:
    """The word a score's JSON key uses: "similarity" (higher = more alike) or "distance"."""
    return "similarity" if higher_is_more_similar else "distance"


class Recognizer(ABC):
    name: str
    template: str  # alignment template name in idface.faces.align
    input_size: int
    embedding_dim: int
    metric: str  # "cosine" or "euclidean"
    threshold: float
    threshold_source: str
    higher_is_more_similar: bool

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)

    def to(self, device: str | torch.device) -> "Recognizer":
        self.model.to(device)
        self.device = torch.device(device)
        return self

    # --- embeddings ------------------------------------------------------------------------
    @abstractmethod
    def _forward(self, chips: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] RGB in [0, 1] on the template -> [B, D]."""

    def embed_aligned(self, chips: torch.Tensor) -> torch.Tensor:
        """Chips [B, 3, S, S] RGB in [0, 1] on this model's template -> [B, D] (differentiable)."""
        self._check(chips, self.input_size)
        return self._forward(chips.to(self.device))

    def embed_frame(self, images: torch.Tensor) -> torch.Tensor:
        """Generator-frame images [B, 3, H, H] in [0, 1] -> [B, D] (differentiable)."""
        self._check(images, None)
        chips = frame_to_template(images.to(self.device), self.template, self.input_size)
        return self._forward(chips)

    def embed_photo(self, photo, detector: str = "auto") -> tuple[np.ndarray, FaceInfo]:
        """Any photo (path, bytes, PIL, array) -> (embedding [D] float32, FaceInfo)."""
        from idface.faces import crop_face

        chip, info = crop_face(photo, self.template, self.input_size, detector)
        return self.embed_chip_uint8(chip), info

    def embed_chip_uint8(self, chip: np.ndarray) -> np.ndarray:
        """One aligned chip [S, S, 3] uint8 -> embedding [D] float32 (no gradient)."""
        x = torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float().div(255)
        with torch.inference_mode():
            return self.embed_aligned(x)[0].float().cpu().numpy()

    # --- comparison --------------------------------------------------------------------------
    def score(self, a, b):
        """Similarity (cosine) or distance (euclidean) between embeddings [D] or [B, D].
        numpy in -> float / numpy out; torch in -> torch out (differentiable)."""
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            a_t, b_t = torch.as_tensor(a), torch.as_tensor(b)
            if self.metric == "cosine":
                return torch.nn.functional.cosine_similarity(a_t, b_t, dim=-1)
            return (a_t - b_t).norm(dim=-1)
        a_n, b_n = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a_n.shape[-1] != self.embedding_dim or b_n.shape[-1] != self.embedding_dim:
            raise InputError(f"{self.name} embeddings have {self.embedding_dim} values; got {a_n.shape} and {b_n.shape}")
        if self.metric == "cosine":
            num = (a_n * b_n).sum(-1)
            den = np.linalg.norm(a_n, axis=-1) * np.linalg.norm(b_n, axis=-1)
            out = num / np.maximum(den, 1e-12)
        else:
            out = np.linalg.norm(a_n - b_n, axis=-1)
        return float(out) if np.ndim(out) == 0 else out

    def is_same(self, score) -> bool | np.ndarray:
        """The model's own same-person rule on a score from `score`."""
        if isinstance(score, torch.Tensor):
            return score >= self.threshold if self.higher_is_more_similar else score < self.threshold
        s = np.asarray(score)
        out = s >= self.threshold if self.higher_is_more_similar else s < self.threshold
        return bool(out) if out.ndim == 0 else out

    def compare_photos(self, photo_a, photo_b) -> dict:
        """Two photos -> {similarity or distance, threshold, same_person, ...} (the CLI's record)."""
        ea, info_a = self.embed_photo(photo_a)
        eb, info_b = self.embed_photo(photo_b)
        s = self.score(ea, eb)
        return {
            "recognizer": self.name,
            "metric": self.metric,
            self.score_kind: round(float(s), 4),  # "distance" (dlib) or "similarity" (cosine)
            "threshold": self.threshold,
            "higher_is_more_similar": self.higher_is_more_similar,
            "same_person": bool(self.is_same(s)),
            "threshold_source": self.threshold_source,
            "faces": [info_a.message, info_b.message],
        }

    @property
    def score_kind(self) -> str:
        return score_kind(self.higher_is_more_similar)

    def describe(self) -> dict:
        return {
            "name": self.name, "template": self.template, "input_size": self.input_size,
            "embedding_dim": self.embedding_dim, "metric": self.metric, "threshold": self.threshold,
            "threshold_source": self.threshold_source, "higher_is_more_similar": self.higher_is_more_similar,
        }

    @staticmethod
    def _check(x: torch.Tensor, size: int | None) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise InputError(f"expected images [B, 3, H, W] in [0, 1]; got {shape}")
        if size is not None and tuple(x.shape[-2:]) != (size, size):
            raise InputError(f"expected {size}x{size} aligned chips; got {tuple(x.shape[-2:])}")
