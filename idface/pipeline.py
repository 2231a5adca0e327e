"""IdFacePipeline: one object from inputs to image, attention maps and codes, shared by the app,
the CLI and evaluation.

    pipe = IdFacePipeline.from_pretrained()              # resolver: argument, env, bundled
    style = pipe.encode_style(aligned_rgb, label_map)    # [19, C] codes, cached per input
    result = pipe(label_map, style=style, identity_embedding=emb,
                  class_sources={"hair": (rgb_b, lm_b), "l_eye": codes_c})
    result.image            # [H, W, 3] uint8 (synthetic)
    result.attention        # token name -> [H, W] float32, probabilities summed to 1 over tokens
    result.codes            # [19, C] codes actually used

Style codes (per image + label map), identity tokens (per embedding) and the generator's blocks
folded with the context (per codes + identity; idface.model.folding, exact) are cached by content
hash in small LRU caches, so editing the mask reruns only the folded generator. Which blocks run
folded is timed once on this machine (idface.model.fold_plan: `pipe.fold_plan`; IDFACE_FOLD=auto|on|off). Inputs are validated with one-line InputErrors.
Face images are never stored: caches keep codes derived from them, keyed by a hash, bounded, and
`clear_caches()` drops them.

Local edits (on by default, `local_edits`): when the mask given differs from the style face's own
label map (style=(image, label_map)), the call composites: within a few pixels of the changed
labels the edited rendering, elsewhere the rendering of the unedited map with the same codes and
token (cached per style, codes and token, so a stroke still runs the generator once), blended
over a smooth ramp (`LOCAL_EDIT_GROW` + `LOCAL_EDIT_FEATHER` of the side). A generator's mask
edits are not exactly local (its embedder, self-attention and normalisation see the whole mask;
a copy fitted to one face memorises it), and a visitor painting hair expects the eyes to stay.
A mask that changes more than `LOCAL_EDIT_MAX_FRACTION` of the image is a new layout, not an
edit: it is rendered as is. `local_edits=False` (per pipeline or per call) gives the
generator's raw output, for measuring the generator itself.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from idface.errors import InputError
from idface.labels import CLASS_NAMES, IDENTITY_TOKEN, NUM_CLASSES, TOKEN_NAMES, class_index, validate_label_map  # noqa: F401
from idface.model import IdFaceModel
from idface.model.fold_plan import FoldPlan, fold_setting, plan_folding
from idface.model.generator import to_dtype
from idface.tensors import onehot

PRECISIONS = ("fp32", "bf16")
# Local edits: the edited rendering is kept within LOCAL_EDIT_GROW of a changed label and blended
# into the unedited rendering over the next LOCAL_EDIT_FEATHER (fractions of the side: 2 + 4 px at
# 128); masks changing more than LOCAL_EDIT_MAX_FRACTION of the image are not composited.
LOCAL_EDIT_GROW = 1 / 64
LOCAL_EDIT_FEATHER = 1 / 32
LOCAL_EDIT_MAX_FRACTION = 0.5


@dataclass(frozen=True)
class StyleCodes:
    """One code per class [K, C] float32 and which classes had a region in the style mask."""

    codes: torch.Tensor       # [K, C]
    presence: torch.Tensor    # [K] bool
    key: str                  # content hash (cache key)


StyleSource = Union[StyleCodes, np.ndarray, torch.Tensor, tuple]  # codes or (image, label_map)


@dataclass
class GenerationResult:
    image: np.ndarray                                # [H, W, 3] uint8, synthetic
    attention: dict[str, np.ndarray]                 # token -> [H, W] float32, mean over layers
    codes: np.ndarray                                # [K, C] float32, the codes used
    presence: np.ndarray                             # [K] bool, codes taken from an image region
    identity_token: np.ndarray                       # [C] float32
    layer_attention: list[dict[str, np.ndarray]] | None = None  # per layer, at layer resolution
    synthetic: bool = True
    info: dict[str, Any] = field(default_factory=dict)


class LRUCache:
    """A small bounded mapping with hit/miss counters."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.data: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: str, make: Callable[[], Any]) -> Any:
        if key in self.data:
            self.hits += 1
            self.data.move_to_end(key)
            return self.data[key]
        self.misses += 1
        value = make()
        self.data[key] = value
        while len(self.data) > self.maxsize:
            self.data.popitem(last=False)
        return value

    def clear(self) -> None:
        self.data.clear()

    def info(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self.data), "maxsize": self.maxsize}


def content_hash(*arrays: np.ndarray | str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, str):
            h.update(a.encode())
        else:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def edit_blend_weight(changed: np.ndarray, grow: float, feather: float) -> np.ndarray:
    """changed [H, W] bool (labels that differ from the unedited map) -> [H, W] float32 weight of
    the edited rendering: 1 within `grow` pixels of a change, falling smoothly (half cosine) to 0
    at `grow + feather` pixels."""
    distance = cv2.distanceTransform((~changed).astype(np.uint8), cv2.DIST_L2, 5)   # px to a change
    ramp = np.clip((grow + feather - distance) / max(feather, 1e-6), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)


class IdFacePipeline:
    def __init__(self, model: IdFaceModel, *, precision: str = "fp32", cache_size: int = 32,
                 source: Any = None, local_edits: bool = True):
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        # Everything runs under inference_mode, so the model's training state and requires_grad
        # are left alone (training may wrap its model in a pipeline for previews; no layer here
        # behaves differently in train mode). Call clear_caches() after the weights change.
        self.model = model
        if not model.training:
            model.to(memory_format=torch.channels_last)    # conv layout whose pixels are tokens
        self.config = model.config
        self.precision = precision
        # bf16: a bfloat16 copy of the generator (taken now) runs the pixels (norms and softmax accumulate in
        # float32 inside their kernels); style codes and the folded blocks are computed in float32
        # and rounded once. See `python -m idface bench` for its speed and distance to fp32.
        self._generator_bf16 = (
            copy.deepcopy(model.generator).to(torch.bfloat16) if precision == "bf16" else None
        )
        fold_setting()                                       # a bad IDFACE_FOLD fails here, in one line
        self._fold_plan: FoldPlan | None = None              # timed at first use (fold_plan)
        self.source = source                                 # hub.CheckpointSource when resolved
        self.style_cache = LRUCache(cache_size)
        self.identity_cache = LRUCache(cache_size)
        self.context_cache = LRUCache(cache_size)
        self.local_edits = local_edits                       # see the module docstring
        self.unedited_cache = LRUCache(cache_size)           # uint8 [S, S, 3] renderings of style maps
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(cls, src: str | None = None, **kwargs: Any) -> "IdFacePipeline":
        """src: a checkpoint folder, 'org/name[@revision]', or None (IDFACE_CHECKPOINT, then
        bundled weights); see idface.hub.resolve_checkpoint."""
        from idface.hub import resolve_checkpoint

        source = resolve_checkpoint(src)
        model = IdFaceModel.from_pretrained(str(source.path))
        return cls(model, source=source, **kwargs)

    # ---- helpers ----
    @property
    def image_size(self) -> int:
        return self.config.image_size

    def prepare_label_map(self, label_map: np.ndarray) -> np.ndarray:
        lm = validate_label_map(label_map)
        size = self.image_size
        if lm.shape != (size, size):
            lm = np.asarray(Image.fromarray(lm).resize((size, size), Image.NEAREST))
        return lm

    def _prepare_image(self, image: np.ndarray, label_shape: tuple[int, int]) -> np.ndarray:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InputError(
                f"a style image must be RGB uint8 [H, W, 3]; got {img.dtype} {tuple(img.shape)}"
            )
        if img.shape[:2] != tuple(label_shape):
            raise InputError(
                f"the style image is {img.shape[1]}x{img.shape[0]} but its label map is "
                f"{label_shape[1]}x{label_shape[0]}; they must be the same aligned face"
            )
        size = self.image_size
        if img.shape[:2] != (size, size):
            img = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
        return img

    def _onehot(self, lm: np.ndarray) -> torch.Tensor:
        return onehot(lm).contiguous(memory_format=torch.channels_last)   # [1, K, H, W]

    # ---- cached stages ----
    def encode_style(self, image: np.ndarray, label_map: np.ndarray) -> StyleCodes:
        """Aligned face (uint8 [H, W, 3]) + its label map [H, W] -> StyleCodes, cached by content."""
        lm_in = validate_label_map(label_map)
        key = content_hash(np.asarray(image), lm_in)

        def make() -> StyleCodes:
            img = self._prepare_image(image, lm_in.shape)
            lm = self.prepare_label_map(lm_in)
            x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 127.5 - 1.0
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                codes, presence = self.model.encode_style(x, self._onehot(lm))
            return StyleCodes(codes[0].detach().float(), presence[0].detach(), key)

        with self._lock:
            return self.style_cache.get_or_make(key, make)

    def _style_from(self, source: StyleSource, what: str) -> StyleCodes:
        if isinstance(source, StyleCodes):
            return source
        if isinstance(source, tuple):
            if len(source) != 2:
                raise InputError(f"{what}: give (image, label_map) or style codes")
            return self.encode_style(*source)
        codes = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
        expected = (NUM_CLASSES, self.config.code_dim)
        if codes.shape != expected:
            raise InputError(f"{what}: style codes must have shape {expected}; got {tuple(codes.shape)}")
        if not np.all(np.isfinite(codes)):
            raise InputError(f"{what}: style codes hold NaN or infinite values")
        codes = np.ascontiguousarray(codes, dtype=np.float32)
        return StyleCodes(torch.from_numpy(codes.copy()), torch.ones(NUM_CLASSES, dtype=torch.bool),
                          content_hash(codes))

    def identity_token(self, embedding: np.ndarray | torch.Tensor | None) -> tuple[torch.Tensor, str]:
        """Recognizer embedding [D] (or None: the learned 'no identity' token) -> ([1, 1, C], key)."""
        if embedding is None:
            emb, key = None, "none"
        else:
            emb = embedding.detach().cpu().numpy() if isinstance(embedding, torch.Tensor) else np.asarray(embedding)
            emb = np.ascontiguousarray(emb, dtype=np.float32).reshape(-1)
            if emb.shape[0] != self.config.identity_dim:
                raise InputError(
                    f"the identity embedding has {emb.shape[0]} dims; this checkpoint expects "
                    f"{self.config.identity_dim} ({self.config.identity_recognizer})"
                )
            if not np.all(np.isfinite(emb)) or not np.any(emb):
                raise InputError("the identity embedding is zero or holds NaN/infinite values")
            key = content_hash(emb)

        def make() -> torch.Tensor:
            with torch.inference_mode():
                x = None if emb is None else torch.from_numpy(emb)[None]
                return self.model.identity_token(x, batch=1).detach().float().clone()

        with self._lock:
            return self.identity_cache.get_or_make(key, make), key

    def _mix(self, base: StyleCodes, class_sources: Mapping[str | int, StyleSource] | None) -> StyleCodes:
        if not class_sources:
            return base
        codes, presence = base.codes.clone(), base.presence.clone()
        for cls, source in class_sources.items():
            k = class_index(cls) if isinstance(cls, str) else int(cls)
            if not 0 <= k < NUM_CLASSES:
                raise InputError(f"class index {cls} is out of range 0..{NUM_CLASSES - 1}")
            style = self._style_from(source, f"class_sources[{cls!r}]")
            codes[k], presence[k] = style.codes[k], style.presence[k]
        return StyleCodes(codes, presence, content_hash(codes.numpy()))

    @property
    def generator(self) -> torch.nn.Module:
        """The generator module that runs the pixels (a bfloat16 copy for precision bf16)."""
        return self._generator_bf16 if self._generator_bf16 is not None else self.model.generator

    @property
    def fold_plan(self) -> FoldPlan:
        """Which stages run folded here (idface.model.fold_plan): decided once, at first use,
        by IDFACE_FOLD or a short timing cached per machine, size and precision."""
        with self._lock:
            if self._fold_plan is None:
                self._fold_plan = plan_folding(self.generator, self.precision, self.config)
            return self._fold_plan

    def fold(self, context: torch.Tensor) -> list:
        """context [1, T, C] float32 -> what the generator runs per block for it: folded blocks
        where fold_plan says so, the plain blocks' ContextKV elsewhere; computed in float32 and
        rounded once for bf16."""
        with torch.inference_mode():
            blocks = self.model.generator.fold(context, self.fold_plan.stages)
        return to_dtype(blocks, torch.bfloat16) if self._generator_bf16 is not None else blocks

    def run_generator(self, mask: torch.Tensor, blocks: list, attention: bool = False):
        """mask [1, K, H, W] float32 one-hot + `fold`'s blocks -> image [1, 3, H, W] (and with
        `attention` the per-stage LayerAttention): exactly what a call runs."""
        if self._generator_bf16 is not None:
            mask = mask.to(torch.bfloat16)
        with torch.inference_mode():
            return self.generator(mask, folded=blocks, return_attention=attention)

    def _folded(self, style: StyleCodes, token: torch.Tensor, token_key: str):
        """The generator's blocks folded with this context (idface.model.folding), cached."""
        key = content_hash(style.key, token_key, self.precision)

        def make():
            with torch.inference_mode():
                context = self.model.context(style.codes[None], token)    # [1, 20, C]
            return self.fold(context)

        return self.context_cache.get_or_make(key, make), key

    def _keep_unedited(self, image: np.ndarray, lm: np.ndarray, style: StyleSource, folded: list,
                       folded_key: str) -> tuple[np.ndarray, float]:
        """Local edits: image [S, S, 3] uint8 rendered for mask lm [S, S] -> the composite with
        the rendering of the style's own label map (same codes and token; see the module
        docstring), and the fraction of the image taken from the unedited rendering."""
        if not (isinstance(style, tuple) and len(style) == 2):
            return image, 0.0                                 # style codes: no label map to compare
        own = self.prepare_label_map(style[1])
        changed = own != lm                                   # [S, S]
        key = content_hash(folded_key, own)
        if not changed.any():                                 # the unedited map itself: remember it
            self.unedited_cache.get_or_make(key, image.copy)
            return image, 0.0
        if changed.mean() > LOCAL_EDIT_MAX_FRACTION:
            return image, 0.0

        def make() -> np.ndarray:
            out = self.run_generator(self._onehot(own), folded)
            return ((out[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()

        unedited = self.unedited_cache.get_or_make(key, make)
        side = self.image_size
        w = edit_blend_weight(changed, LOCAL_EDIT_GROW * side, LOCAL_EDIT_FEATHER * side)[..., None]
        mixed = w * image.astype(np.float32) + (1 - w) * unedited.astype(np.float32)
        return np.clip(mixed.round(), 0, 255).astype(np.uint8), float(1 - w.mean())

    # ---- the call ----
    def __call__(
        self,
        label_map: np.ndarray,
        style: StyleSource | None = None,
        identity_embedding: np.ndarray | torch.Tensor | None = None,
        class_sources: Mapping[str | int, StyleSource] | None = None,
        *,
        attention: bool = True,
        layer_attention: bool = False,
        local_edits: bool | None = None,
    ) -> GenerationResult:
        """Generate a face for `label_map` ([H, W] class indices) with the style codes of `style`
        ((image, label_map), StyleCodes or a [19, C] array), classes listed in `class_sources`
        taking their code from another source, and the identity token of `identity_embedding`.
        local_edits: None = the pipeline's setting (module docstring); attention maps are the
        edited rendering's."""
        if style is None:
            raise InputError("a style is needed: pass style=(aligned image, label map) or style codes")
        lm = self.prepare_label_map(label_map)
        with self._lock:
            codes = self._mix(self._style_from(style, "style"), class_sources)
            token, token_key = self.identity_token(identity_embedding)
            folded, folded_key = self._folded(codes, token, token_key)
            want = attention or layer_attention
            out = self.run_generator(self._onehot(lm), folded, attention=want)
            image, layers = out if want else (out, [])
            rgb = ((image[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            rgb = rgb.permute(1, 2, 0).contiguous().numpy()                    # [S, S, 3]
            kept = 0.0
            if self.local_edits if local_edits is None else local_edits:
                rgb, kept = self._keep_unedited(rgb, lm, style, folded, folded_key)
        result = GenerationResult(
            image=rgb,
            attention={},
            codes=codes.codes.numpy().copy(),
            presence=codes.presence.numpy().copy(),
            identity_token=token[0, 0].numpy().copy(),
            info={"precision": self.precision, "source": self.source.describe() if self.source else None,
                  "folded_stages": list(self.fold_plan.stages), "kept_unedited_fraction": kept},
        )
        if attention:
            size = self.image_size
            mean = sum(F.interpolate(a.probs.float(), size=(size, size), mode="bilinear",
                                     align_corners=False) for a in layers) / len(layers)
            result.attention = {name: mean[0, i].numpy() for i, name in enumerate(TOKEN_NAMES)}
        if layer_attention:
            result.layer_attention = [
                {name: a.probs[0, i].float().numpy() for i, name in enumerate(TOKEN_NAMES)} for a in layers
            ]
        return result

    def cache_info(self) -> dict[str, dict[str, int]]:
        return {"style": self.style_cache.info(), "identity": self.identity_cache.info(),
                "context": self.context_cache.info(), "unedited": self.unedited_cache.info()}

    def clear_caches(self) -> None:
        with self._lock:
            for cache in (self.style_cache, self.identity_cache, self.context_cache, self.unedited_cache):
                cache.clear()
