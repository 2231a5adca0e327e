"""IdFaceModel: style encoder + identity projection + generator, one Hub checkpoint.

A checkpoint folder (local or a Hub repo) holds config.json (a flat ModelConfig), model.safetensors
and README.md (the model card), written by huggingface_hub's PyTorchModelHubMixin.save_pretrained.
Loading reads only safetensors (never a pickle) and is strict: a missing, extra or mis-shaped
tensor raises CheckpointMismatchError naming the tensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn

from idface.errors import IdfaceError, WeightsNotFoundError
from idface.model.config import ModelConfig, get_config
from idface.model.generator import ContextKV, Generator, LayerAttention
from idface.model.style_encoder import IdentityProjection, StyleEncoder

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

MODEL_CARD = """---
{{ card_data }}
---

# idface generator ({{ preset }})

Identity-aware semantic face synthesis: a generator paints a face from a 19-class CelebAMask-HQ
mask, one style code per class from a style face, and an identity token projected from a
{{ recognizer }} face-recognition embedding ({{ identity_dim }}-d). Reference implementation of
Tarollo et al., "Adversarial Identity Injection for Semantic Face Image Synthesis" (CVPR 2024
Workshops, {{ paper_url }}).

| part | parameters |
|---|---|
| style encoder | {{ style_params }} |
| identity projection | {{ identity_params }} |
| generator (with mask embedder) | {{ generator_params }} |

Output {{ image_size }}x{{ image_size }}; context [B, {{ num_tokens }}, {{ code_dim }}].
Load with `idface.model.IdFaceModel.from_pretrained(...)` or `idface.pipeline.IdFacePipeline`.
Images it generates are synthetic.

{{ notes }}
"""


class CheckpointMismatchError(IdfaceError, RuntimeError):
    """A checkpoint's tensors do not match the model built from its config."""


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class IdFaceModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="idface",
    license="mit",
    tags=["face-synthesis", "semantic-image-synthesis", "identity", "synthetic-images"],
    paper_url="https://arxiv.org/abs/2404.10408",
    model_card_template=MODEL_CARD,
):
    def __init__(self, config: ModelConfig | dict | str = "paper-256"):
        super().__init__()
        self.config = get_config(config)
        self._hub_mixin_config = self.config.to_dict()   # what save_pretrained writes
        self.style_encoder = StyleEncoder(self.config)
        self.identity_projection = IdentityProjection(self.config)
        self.generator = Generator(self.config)

    # ---- the three parts ----
    def encode_style(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B, 3, H, W] in [-1, 1], mask [B, K, H, W] one-hot -> (codes [B, K, code_dim],
        presence [B, K])."""
        return self.style_encoder(image, mask)

    def identity_token(self, embedding: torch.Tensor | None, present: torch.Tensor | None = None,
                       batch: int = 1) -> torch.Tensor:
        """embedding [B, identity_dim] or None -> [B, 1, code_dim]."""
        return self.identity_projection(embedding, present, batch)

    @staticmethod
    def context(codes: torch.Tensor, identity_token: torch.Tensor) -> torch.Tensor:
        """codes [B, K, D] + identity token [B, 1, D] -> context [B, K + 1, D] (identity last)."""
        return torch.cat([codes, identity_token.expand(codes.shape[0], -1, -1)], 1)

    def forward(
        self,
        mask: torch.Tensor,
        style_image: torch.Tensor,
        style_mask: torch.Tensor | None = None,
        identity_embedding: torch.Tensor | None = None,
        identity_present: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[LayerAttention]]:
        """Training / reconstruction path: mask [B, K, H, W] one-hot, style image [B, 3, H, W] in
        [-1, 1] with its mask (default: `mask`), identity embedding [B, identity_dim] or None ->
        image [B, 3, H, W] (and per-layer attention)."""
        codes, _ = self.encode_style(style_image, mask if style_mask is None else style_mask)
        token = self.identity_token(identity_embedding, identity_present, batch=codes.shape[0])
        return self.generator(mask, self.context(codes, token), return_attention=return_attention)

    def parameter_counts(self) -> dict[str, int]:
        return {
            "style_encoder": count_parameters(self.style_encoder),
            "identity_projection": count_parameters(self.identity_projection),
            "generator": count_parameters(self.generator),
            "mask_embedder": count_parameters(self.generator.mask_embedder),
            "total": count_parameters(self),
        }

    # ---- Hub ----
    def generate_model_card(self, *args, **kwargs):
        counts = self.parameter_counts()
        cfg = self.config
        values = dict(
            preset=cfg.name, recognizer=cfg.identity_recognizer, identity_dim=cfg.identity_dim,
            image_size=cfg.image_size, num_tokens=cfg.num_tokens, code_dim=cfg.code_dim,
            style_params=f"{counts['style_encoder']:,}",
            identity_params=f"{counts['identity_projection']:,}",
            generator_params=f"{counts['generator']:,}",
            notes=cfg.extra.get("notes", ""),
        )
        values.update(kwargs)
        return super().generate_model_card(*args, **values)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs,
    ) -> "IdFaceModel":
        """Safetensors only (never a pickle), strict by default."""
        if "config" not in model_kwargs:
            raise WeightsNotFoundError(f"{model_id}: no {CONFIG_NAME}; cannot tell which model it holds")
        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            weights_file = os.path.join(model_id, WEIGHTS_NAME)
            if not os.path.isfile(weights_file):
                raise WeightsNotFoundError(f"{model_id}: no {WEIGHTS_NAME} in this folder")
        else:
            weights_file = hf_hub_download(
                repo_id=model_id, filename=WEIGHTS_NAME, revision=revision, cache_dir=cache_dir,
                force_download=force_download, token=token, local_files_only=local_files_only,
            )
        model.load_weights(weights_file, strict=strict, map_location=map_location)
        return model.eval()

    def load_weights(self, path: str | Path, strict: bool = True, map_location: str = "cpu") -> None:
        """Load a safetensors file; with strict, any missing / extra / mis-shaped tensor is an
        error that names them."""
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device=map_location)
        except Exception as err:  # SafetensorError, OSError: truncated, corrupt or not safetensors
            raise CheckpointMismatchError(
                f"the weights file {path} is corrupt or truncated ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'unreadable'}); fetch it again: for a Hub "
                "checkpoint `hf download REPO --revision COMMIT --force-download` (or delete the snapshot "
                "from the HF cache), for a local folder copy or export it again"
            ) from None
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        extra = sorted(set(state) - set(own))
        misshaped = sorted(
            f"{k} {tuple(state[k].shape)} (model {tuple(own[k].shape)})"
            for k in set(own) & set(state) if state[k].shape != own[k].shape
        )
        if strict and (missing or extra or misshaped):
            parts = []
            for label, names in (("missing", missing), ("unexpected", extra), ("mis-shaped", misshaped)):
                if names:
                    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                    parts.append(f"{len(names)} {label} tensor(s): {shown}")
            raise CheckpointMismatchError(
                f"checkpoint {path} does not match model config {self.config.name!r}: " + "; ".join(parts)
            )
        self.load_state_dict(state, strict=strict)


def read_config(folder: str | Path) -> ModelConfig:
    """The ModelConfig stored in a checkpoint folder's config.json."""
    path = Path(folder) / CONFIG_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsNotFoundError(f"{folder}: no {CONFIG_NAME}") from None
    except json.JSONDecodeError as err:
        raise CheckpointMismatchError(f"{path} is not valid JSON ({err})") from None
    return ModelConfig.from_dict(data)


__all__ = [
    "IdFaceModel", "CheckpointMismatchError", "ContextKV", "LayerAttention", "count_parameters",
    "read_config", "WEIGHTS_NAME", "CONFIG_NAME",
]
