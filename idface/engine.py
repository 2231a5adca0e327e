"""One object behind the app, its API and `python -m idface generate`: prepare faces, generate,
score. Everything the three entry points show comes from here, so they agree.

Faces are prepared once per upload (detect, align to the generator frame, parse, embed with every
available recognizer, encode style codes) and then reused for every stroke, so a stroke costs one
generator pass plus one embedding of the output per recognizer.

Without a generator checkpoint the engine still prepares and compares faces; `generate` then
raises UnavailableError with `generator_help` as the message.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from idface.errors import IdfaceError, InputError, UnavailableError, WeightsNotFoundError
from idface.images import load_image, load_mask
from idface.labels import CLASS_NAMES, DISPLAY_NAMES, IDENTITY_TOKEN, NUM_CLASSES, validate_label_map
from idface.tensors import image_tensor
from idface.threads import thread_local_torch_threads
from idface.weights import REPO_ROOT

log = logging.getLogger(__name__)

# The editor and the display work in the faces package's generator frame (256 x 256).
FRAME_SIZE = 256
IDENTITY_SOURCES = ("identity", "style", "none")
# fp32 by default; IDFACE_PRECISION=bf16 halves generator time on CPUs with AVX-512 bf16.
PRECISION = os.environ.get("IDFACE_PRECISION", "fp32")
# Intra-op threads of one generator or recognizer pass, in the calling thread only (idface.threads);
# unset: the calling thread's own setting (the app's new-face steps set one, ui.handlers). Measured
# on the shared 2-core machine at load 5-8, within the noise there: in a plain script two threads
# took 10-25x the wall time of one (dlib-resnet 106 ms -> 1.2 s, generator 102 ms -> 3.0 s), but in
# the app's strokes two were not worse (scripts/bench_stroke.py: 0.77 and 0.89 s on two, 0.97 and
# 1.05 s on one).
_threads = os.environ.get("IDFACE_ENGINE_THREADS", "").strip()
ENGINE_THREADS = int(_threads) if _threads else None
MAX_FITTED_PIPELINES = 4  # materialised fitted models kept (sessions hold only fp16 deltas)

GET_CHECKPOINT_HELP = (
    "No generator checkpoint was found: put one in weights/idface-demo/ (or pass --checkpoint "
    "DIR_OR_REPO / set IDFACE_CHECKPOINT), or train one with `python -m idface train`; "
    "mask editing, parsing and the identity comparison work without it."
)


@dataclass
class PreparedFace:
    """A detected, aligned, parsed and embedded face. Lives only in the visitor's session."""

    aligned: np.ndarray                       # [S, S, 3] uint8 in the generator frame
    label_map: np.ndarray                     # [S, S] uint8 parsed classes
    message: str                              # what happened (several faces: which one was used)
    faces_found: int
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # recognizer -> [D] of `aligned`
    fitted: Any = None                        # idface.fitting.FittedFace: weights fitted to this face (session only)


@dataclass
class Generation:
    image: np.ndarray                         # [H, W, 3] uint8 at the generator's resolution
    scores: dict | None                       # see score_faces; None: not scored (yet)
    attention: dict[str, np.ndarray]          # token name -> [h, w] float16 map (may be empty)
    settings: dict                            # what made it (for the PNG metadata)
    seconds: float


def parse_class_sources(value: Any) -> dict[int, str]:
    """{class: 'style'|'identity'} from a dict, or from a list of class names taken from the identity
    face (the app's checkbox group and the CLI's --from-identity hair,skin)."""
    from idface.labels import class_index

    if value is None or value == "" or value == []:
        return {}
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if isinstance(value, dict):
        out = {}
        for key, src in value.items():
            k = key if isinstance(key, int) else class_index(str(key))
            if src not in ("style", "identity"):
                raise InputError(f"the style source of {CLASS_NAMES[k]} must be 'style' or 'identity', not {src!r}")
            out[k] = src
        return out
    return {class_index(str(name)): "identity" for name in value}


def where_in_photo(box, shape) -> str:
    """'on the left' / 'in the middle' / 'at the top right' ... for a face box in a photo."""
    h, w = shape[:2]
    cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    if not row and not col:
        return "in the middle"
    if not row:
        return f"on the {col}"
    return f"at the {row} {col}".rstrip() if col else f"at the {row}"


def verdict(entry: dict) -> str:
    """The generated face's verdict in words, from one recognizer's entry of `Engine.score_faces`."""
    style, ident = entry.get("same_as_style"), entry.get("same_as_identity")
    if style is None or ident is None:
        return ""
    if ident and not style:
        return "recognized as the identity face"
    if style and not ident:
        return "recognized as the style face"
    if style and ident:
        return "matches both faces"
    return "matches neither face"


def reference_verdict(entry: dict) -> str:
    """Whether the style and identity faces themselves are the same person, in words."""
    same = entry.get("style_same_as_identity")
    if same is None:
        return ""
    return "the two faces are the same person" if same else "the two faces are different people"


def weights_description(fitted: Any, practice: dict | None) -> str:
    """Which weights made an image, in words (the result panel and the PNG metadata)."""
    if fitted is None:
        return "base checkpoint"
    text = "fitted to this style face" if fitted.key != "checkpoint" else "fitted checkpoint"
    if practice is not None:
        text += (f", which practised the identity face's token ({practice['steps']} steps, "
                 f"{practice['seconds']:.1f} s)")
    return text


def public_label(label: str, folder: Path | None) -> str:
    """A checkpoint description fit for visitors (the page, the PNG metadata): a folder inside
    the project as weights/..., any other folder by its name only, never a server path."""
    label = label.replace(str(REPO_ROOT) + os.sep, "")  # weights/... not /abs/path/weights/...
    if folder is not None and str(folder) in label:
        label = label.replace(str(folder), Path(folder).name)
    return label


class Engine:
    """Faces, recognizers and (when a checkpoint exists) the generator, on the CPU by default."""

    def __init__(self, checkpoint: str | None = None, device: str = "cpu", load_generator: bool = True,
                 strict: bool = True):
        """strict: a checkpoint that was named (argument or IDFACE_CHECKPOINT) but cannot be loaded
        raises; with strict=False (the app) the engine starts without a generator and says why."""
        self.device = torch.device(device)
        self.pipeline = None
        self.checkpoint_label = "none"
        self.generator_help = GET_CHECKPOINT_HELP
        self.generator_error = GET_CHECKPOINT_HELP  # the resolver's full message (every place tried)
        self._lock = threading.Lock()  # one generator/recognizer pass at a time per process
        self._recognizers: dict[str, Any] | None = None
        self._fitted_pipelines: OrderedDict[int, tuple[Any, Any]] = OrderedDict()  # id -> (FittedFace, pipeline)
        self._fitted_lock = threading.Lock()
        self._checkpoint_fit = None  # a FittedFace for a checkpoint that was itself fitted to a face
        self.inject_config = None    # idface.fitting.inject.InjectConfig (None: its defaults)
        self._unavailable: dict[str, str] = {}
        self.strict = strict
        if load_generator:
            self._load_pipeline(checkpoint)

    # ---- generator ----
    def _load_pipeline(self, checkpoint: str | None) -> None:
        try:
            from idface.pipeline import IdFacePipeline
        except ImportError as err:  # the model package is not part of this install
            self.generator_help = f"The generator code could not be imported ({err}); {GET_CHECKPOINT_HELP}"
            return
        try:
            self.pipeline = IdFacePipeline.from_pretrained(checkpoint, precision=PRECISION)
        except IdfaceError as err:  # not found, or a mismatching / broken checkpoint
            named = bool(checkpoint or os.environ.get("IDFACE_CHECKPOINT"))
            if self.strict and (named or not isinstance(err, WeightsNotFoundError)):
                raise  # a checkpoint was named: not finding it is an error, not a fallback
            log.warning("generator not loaded: %s", err)
            self.generator_error = str(err)
            if named or not isinstance(err, WeightsNotFoundError):
                self.generator_help = f"The generator checkpoint could not be loaded: {err}"
            return
        # which generator stages run folded: timed now (once per machine and size, then cached),
        # so that the first visitor does not wait for it
        plan = self.pipeline.fold_plan
        log.info("generator fold plan: %s", plan.describe(
            [self.pipeline.config.base_resolution * 2**i for i in range(self.pipeline.config.num_stages)]))
        source = getattr(self.pipeline, "source", None)
        label = source.describe() if source is not None else str(checkpoint)
        self.checkpoint_label = public_label(label, getattr(source, "path", None))

    def fitted_weights(self, style: PreparedFace | None):
        """The FittedFace that applies to `style`: the one its session fitted, or (the checkpoint
        itself was fitted to a face, `python -m idface fit`) the checkpoint's; None: base weights."""
        fitted = getattr(style, "fitted", None)
        if fitted is not None or self.pipeline is None:
            return fitted
        if self._checkpoint_fit is None and self.pipeline.config.extra.get("fitted"):
            from idface.fitting import FittedFace, WeightDelta

            self._checkpoint_fit = FittedFace("checkpoint", WeightDelta({}, self.pipeline.config),
                                              dict(self.pipeline.config.extra["fitted"]))
        return self._checkpoint_fit

    def pipeline_for(self, style: PreparedFace | None, identity_key: str | None = None):
        """The base pipeline, or for a style face with fitted weights (FittedFace, held by that
        visitor's session) a pipeline on base + its deltas, or + the deltas that also practised the
        identity face `identity_key` (practise_identity); the last few are kept (bounded)."""
        fitted = self.fitted_weights(style)
        if fitted is None or self.pipeline is None:
            return self.pipeline
        if identity_key is not None and identity_key not in fitted.practised:
            identity_key = None      # evicted by a newer identity face since it was practised: the plain fit
        if fitted is self._checkpoint_fit and identity_key is None:
            return self.pipeline
        with self._fitted_lock:
            key = (id(fitted), identity_key)
            hit = self._fitted_pipelines.get(key)
            if hit is not None and hit[0] is fitted:
                self._fitted_pipelines.move_to_end(key)
                return hit[1]
            from idface.pipeline import IdFacePipeline

            practised = None if identity_key is None else fitted.practised.get(identity_key)
            delta = fitted.delta if practised is None else practised[0]
            pipe = IdFacePipeline(delta.apply(self.pipeline.model), precision=PRECISION, cache_size=4)
            self._fitted_pipelines[key] = (fitted, pipe)
            while len(self._fitted_pipelines) > MAX_FITTED_PIPELINES:
                self._fitted_pipelines.popitem(last=False)
            return pipe

    def forget_fitted(self, fitted: Any) -> None:
        """Drop the materialised pipelines of a FittedFace (its session ended)."""
        with self._fitted_lock:
            for key in [k for k, (f, _) in self._fitted_pipelines.items() if f is fitted]:
                del self._fitted_pipelines[key]

    def practise_identity(self, style: PreparedFace, identity: PreparedFace | None) -> tuple[str | None, dict | None]:
        """Weights fitted to `style` know only the tokens of the people they trained with: before
        the first image with another person's identity face, the fitted copy practises that face's
        token (idface.fitting.inject, a few seconds, once per identity face and fitted face).
        -> (identity key for pipeline_for, the practice's summary), or (None, None) where nothing
        needs practising: base weights, no identity face, the same person, no recognizer."""
        fitted = self.fitted_weights(style)
        if fitted is None or identity is None or style is None:
            return None, None
        name = self.pipeline.config.identity_recognizer
        recognizer = self.recognizers().get(name)
        if recognizer is None:
            return None, None
        self.embed_missing(style, [name])
        self.embed_missing(identity, [name])
        e_style, e_identity = style.embeddings.get(name), identity.embeddings.get(name)
        if e_style is None or e_identity is None or recognizer.is_same(float(recognizer.score(e_style, e_identity))):
            return None, None
        from idface.fitting import WeightDelta, photo_key
        from idface.fitting.inject import practise_identity

        key = photo_key(np.asarray(e_style, dtype=np.float32), np.asarray(e_identity, dtype=np.float32))
        with fitted.lock:
            if key in fitted.practised:
                fitted.practised.move_to_end(key)
                return key, fitted.practised[key][1]
            model = self.pipeline_for(style).model
            # every recognizer the bars show is practised against, not only the token's own
            self.embed_missing(style)
            self.embed_missing(identity)
            also = {n: (rec, style.embeddings[n], identity.embeddings[n]) for n, rec in self.recognizers().items()
                    if n != name and n in style.embeddings and n in identity.embeddings}
            result = practise_identity(model, recognizer, style.aligned, style.label_map, e_style, e_identity,
                                       self.inject_config, also=also)
            fitted.add_practised(key, WeightDelta.between(self.pipeline.model, result.model), result.summary())
            return key, fitted.practised[key][1]

    @property
    def generator_ready(self) -> bool:
        return self.pipeline is not None

    def identity_token_problem(self) -> str | None:
        """Why the identity token cannot use a face here (its recognizer is unavailable), or None."""
        if self.pipeline is None:
            return None
        name = self.pipeline.config.identity_recognizer
        if name in self.recognizers():
            return None
        reason = self.unavailable_recognizers().get(name, "not loaded").split(";")[0]
        return f"this checkpoint's identity token needs the {name} recognizer, which is not available here ({reason})"

    @property
    def image_size(self) -> int:
        return int(self.pipeline.image_size) if self.pipeline is not None else FRAME_SIZE

    # ---- recognizers ----
    def recognizers(self) -> dict[str, Any]:
        if self._recognizers is None:
            from idface.identity.registry import available_recognizers, get_recognizer, recognizer_status

            self._recognizers = {}
            for name in available_recognizers():
                try:
                    self._recognizers[name] = get_recognizer(name)
                except IdfaceError as err:
                    self._unavailable[name] = str(err)
            for name, reason in recognizer_status().items():
                if reason != "available" and name not in self._recognizers:
                    self._unavailable.setdefault(name, reason)  # keep the load error when loading failed
        return self._recognizers

    def unavailable_recognizers(self) -> dict[str, str]:
        self.recognizers()
        return dict(self._unavailable)

    def _embed_frames(self, images: list[np.ndarray], names: Any = None) -> dict[str, list]:
        """Every recognizer's (or those in `names`) embedding of images in the generator frame (any size)."""
        batch = torch.cat([image_tensor(img) for img in images]).to(self.device)
        out = {}
        with torch.no_grad(), thread_local_torch_threads(ENGINE_THREADS):
            for name, rec in self.recognizers().items():
                if names is not None and name not in names:
                    continue
                emb = rec.embed_frame(batch).float().cpu().numpy()  # [B, D]
                out[name] = [emb[i] for i in range(len(images))]
        return out

    def embed_missing(self, face: PreparedFace | None, names: Any = None) -> None:
        """Fill in the embeddings `face` lacks: every available recognizer's, or those in `names`
        (a face prepared with embed=False, or a recognizer that became available since)."""
        if face is None:
            return
        wanted = [n for n in self.recognizers() if (names is None or n in names) and n not in face.embeddings]
        if wanted:
            for name, (emb,) in self._embed_frames([face.aligned], wanted).items():
                face.embeddings.setdefault(name, emb)

    # ---- faces ----
    def prepare(self, photo: Any, what: str = "face", embed: bool = True) -> PreparedFace:
        """Photo (path, bytes, array) -> PreparedFace. Raises NoFaceError / InputError.
        embed=False: no recognizer embeddings yet (embed_missing, generate and score_faces add
        what they need), so that the app can show a generated face before the identity bars."""
        try:
            from idface.faces import prepare_face
        except ImportError as err:
            raise UnavailableError(f"face detection is not available here ({err})") from None

        rgb = load_image(photo, what)
        with self._lock:
            try:
                aligned = prepare_face(rgb)
            except ImportError as err:  # a face model package missing from this install
                raise UnavailableError(f"face parsing is not available here ({err})") from None
            message = str(aligned.message or "")
            if aligned.faces_found > 1:
                message += f"; that is the face {where_in_photo(aligned.face.box, rgb.shape)} of the photo"
            face = PreparedFace(
                aligned=np.asarray(aligned.image, dtype=np.uint8),
                label_map=validate_label_map(aligned.label_map),
                message=message,
                faces_found=int(aligned.faces_found),
            )
            if embed:
                self.embed_missing(face)
        return face

    # ---- scores ----
    def score_faces(self, style: PreparedFace | None, identity: PreparedFace | None,
                    generated: np.ndarray | None = None) -> dict:
        """Per recognizer: the generated face's score against the style face and the identity face
        (`similarity_to_style` or `distance_to_style`, as `higher_is_more_similar` says), the
        style-vs-identity reference, the threshold and the verdicts."""
        recognizers = self.recognizers()
        for face in (style, identity):  # prepared with embed=False, or a recognizer that became available since
            self.embed_missing(face)
        gen_emb = self._embed_frames([generated]) if generated is not None else {}
        result: dict[str, dict] = {}
        for name, rec in recognizers.items():
            kind = rec.score_kind  # keys say what they hold: distance_to_style (dlib) or similarity_to_style
            entry: dict[str, Any] = {
                "threshold": float(rec.threshold),
                "threshold_source": str(getattr(rec, "threshold_source", "") or ""),
                "higher_is_more_similar": bool(rec.higher_is_more_similar),
            }
            if generated is not None:
                g = gen_emb[name][0]
                for key, face in (("style", style), ("identity", identity)):
                    if face is not None:
                        s = float(rec.score(g, face.embeddings[name]))
                        entry[f"{kind}_to_{key}"] = s
                        entry[f"same_as_{key}"] = bool(rec.is_same(s))
            if style is not None and identity is not None:
                s = float(rec.score(style.embeddings[name], identity.embeddings[name]))
                entry["style_vs_identity"] = s
                entry["style_same_as_identity"] = bool(rec.is_same(s))
            if generated is not None:
                entry["verdict"] = verdict(entry)
            result[name] = entry
        return {"recognizers": result, "unavailable": self.unavailable_recognizers()}

    # ---- generation ----
    def generate(
        self,
        label_map: np.ndarray,
        style: PreparedFace,
        identity: PreparedFace | None,
        identity_source: str = "identity",
        class_sources: Any = None,
        score: bool = True,
    ) -> Generation:
        """One generator pass + scores (score=False: scores None; score_faces later, e.g. after the
        picture is shown). label_map: [S, S] uint8 in the generator frame."""
        if self.pipeline is None:
            raise UnavailableError(self.generator_help)
        if identity_source not in IDENTITY_SOURCES:
            raise InputError(f"identity token source must be one of {', '.join(IDENTITY_SOURCES)}; got {identity_source!r}")
        lm = validate_label_map(label_map)
        sources = parse_class_sources(class_sources)
        if identity is None and (identity_source == "identity" or "identity" in sources.values()):
            raise InputError("an identity face is needed for the identity token or the classes taken from it")
        start = time.perf_counter()
        practised, practice = (self.practise_identity(style, identity) if identity_source == "identity"
                               else (None, None))
        with self._lock:
            image, attention = self._run_pipeline(lm, style, identity, identity_source, sources, practised)
        scores = self.score_faces(style, identity, image) if score else None
        settings = {
            "identity_token": identity_source,
            "classes_from_identity_face": [CLASS_NAMES[k] for k, v in sorted(sources.items()) if v == "identity"],
            "mask_classes": [CLASS_NAMES[k] for k in np.unique(lm)],
            "image_size": int(image.shape[0]),
            "weights": weights_description(self.fitted_weights(style), practice),
        }
        if practice is not None:
            settings["identity_practice"] = practice
        return Generation(image, scores, attention, settings, time.perf_counter() - start)

    def _run_pipeline(self, lm, style, identity, identity_source, sources, practised=None):
        """The generator pass. Style codes, identity tokens and the folded context are cached by the
        pipeline (content hashes), so after the first call only the generator runs."""
        pipe = self.pipeline_for(style, practised)
        token_face = {"identity": identity, "style": style, "none": None}[identity_source]
        embedding = None
        if token_face is not None:
            recognizer = pipe.config.identity_recognizer
            self.embed_missing(token_face, [recognizer])  # (a face prepared with embed=False)
            embedding = token_face.embeddings.get(recognizer)
            if embedding is None:
                reason = self.unavailable_recognizers().get(recognizer, "not loaded")
                raise UnavailableError(
                    f"this checkpoint's identity token needs the {recognizer} recognizer, which is not "
                    f"available here ({reason}); choose 'None' for the identity token"
                )
        class_sources = {k: (identity.aligned, identity.label_map) for k, src in sources.items() if src == "identity"}
        with thread_local_torch_threads(ENGINE_THREADS):
            result = pipe(lm, style=(style.aligned, style.label_map), identity_embedding=embedding,
                          class_sources=class_sources or None)
        # float16 halves what each visitor's session keeps (20 maps at the generator's resolution)
        return (np.asarray(result.image, dtype=np.uint8),
                {name: np.asarray(a, dtype=np.float16) for name, a in result.attention.items()})


def generate_from_photos(
    engine: Engine,
    mask: Any,
    style_photo: Any,
    identity_photo: Any,
    identity_source: str = "identity",
    class_sources: Any = None,
) -> tuple[Generation, PreparedFace, PreparedFace]:
    """The /generate API and `python -m idface generate`: unaligned photos + a mask image (index or
    colour PNG, any size: resized with nearest neighbour to the generator frame)."""
    label_map = load_mask(mask, size=FRAME_SIZE) if not isinstance(mask, np.ndarray) or mask.ndim != 2 else validate_label_map(mask)
    if label_map.shape != (FRAME_SIZE, FRAME_SIZE):
        label_map = load_mask(label_map, size=FRAME_SIZE)
    style = engine.prepare(style_photo, "style face")
    identity = engine.prepare(identity_photo, "identity face")
    return engine.generate(label_map, style, identity, identity_source, class_sources), style, identity


def display_token_names() -> list[tuple[str, str]]:
    """(label, value) pairs for the attention-token picker."""
    return [("Identity token", IDENTITY_TOKEN)] + [(DISPLAY_NAMES[k], CLASS_NAMES[k]) for k in range(1, NUM_CLASSES)]
