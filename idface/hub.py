"""Where the generator's weights come from: one resolver for the app, the CLI and evaluation.

Order (the first that names a checkpoint wins):
  1. the explicit argument: a local folder, or a Hub repo id with an optional revision
     ("org/name" or "org/name@revision");
  2. the environment: IDFACE_CHECKPOINT (folder or repo id, "@revision" allowed) and
     IDFACE_REVISION (a revision for a repo id given without one);
  3. bundled weights under weights/ (BUNDLED_CHECKPOINTS, in that order).
An explicit argument or IDFACE_CHECKPOINT that cannot be used is an error (never a silent
fall-back to other weights). When nothing is found, WeightsNotFoundError lists every place tried
and how to fix it, in one message.

A checkpoint is a folder with config.json + model.safetensors (+ README.md, the model card).
Hub downloads go through huggingface_hub.snapshot_download restricted to those files, so no
pickle is ever fetched or unpickled; the Hub cache (HF_HOME / HF_HUB_CACHE) is reused offline.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from idface.errors import WeightsNotFoundError
from idface.weights import WEIGHTS_DIR, is_pinned  # noqa: F401 (hub.is_pinned is public)

ENV_CHECKPOINT = "IDFACE_CHECKPOINT"
ENV_REVISION = "IDFACE_REVISION"
# A Hub checkpoint must name a 40-hex commit when this is on, so a deployment never silently
# picks up new weights pushed to a branch. Default: on inside a Hugging Face Space (SPACE_ID is
# set there), off elsewhere; IDFACE_REQUIRE_PINNED=0/1 overrides.
ENV_REQUIRE_PINNED = "IDFACE_REQUIRE_PINNED"
BUNDLED_CHECKPOINTS: tuple[str, ...] = ("idface-demo",)   # folders under weights/, first wins
# What a person must know about each bundled checkpoint, shown wherever the checkpoint is named.
BUNDLED_NOTES: dict[str, str] = {
    "idface-demo": "small demo checkpoint trained only on the six bundled photos; it does not generalise to new faces",
}
REQUIRED_FILES = ("config.json", "model.safetensors")
HUB_FILES = ["config.json", "*.safetensors", "README.md"]  # allow_patterns: never *.bin / *.pt

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def pinning_required() -> bool:
    value = os.environ.get(ENV_REQUIRE_PINNED, "").strip().lower()
    if value:
        return value in ("1", "true", "yes", "on")
    return bool(os.environ.get("SPACE_ID"))

HOW_TO_FIX = (
    f"fix: pass a checkpoint folder or Hub repo id (e.g. --checkpoint org/name@main), set "
    f"{ENV_CHECKPOINT}=<folder or org/name[@revision]>, or put a checkpoint "
    f"(config.json + model.safetensors) in {WEIGHTS_DIR / BUNDLED_CHECKPOINTS[0]}"
)


@dataclass(frozen=True)
class CheckpointSource:
    """A resolved checkpoint: the local folder to load and where it came from."""

    kind: str                     # "explicit-local" | "hub" | "env" | "bundled"
    path: Path                    # local folder with config.json + model.safetensors
    repo_id: str | None = None    # Hub repo id when downloaded / read from the Hub cache
    revision: str | None = None   # the revision asked for (branch, tag or commit)
    commit: str | None = None     # the commit the snapshot folder belongs to (Hub only)

    def describe(self) -> str:
        if self.repo_id:
            rev = self.revision or "main"
            commit = f", commit {self.commit[:12]}" if self.commit and self.commit != rev else ""
            via = f" via {ENV_CHECKPOINT}" if self.kind == "env" else ""
            return f"Hub {self.repo_id}@{rev}{commit}{via}"
        label = {"explicit-local": "folder", "env": f"folder from {ENV_CHECKPOINT}",
                 "bundled": "bundled weights"}[self.kind]
        note = BUNDLED_NOTES.get(self.path.name) if self.kind == "bundled" else None
        return f"{label} {self.path}" + (f" ({note})" if note else "")


def split_revision(spec: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev'); a spec without '@' has no revision."""
    if "@" in spec:
        repo, rev = spec.rsplit("@", 1)
        return repo, rev or None
    return spec, None


def _missing_files(folder: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def download_checkpoint(repo_id: str, revision: str | None = None) -> Path:
    """Snapshot of a Hub repo's config.json, *.safetensors and README.md (from the local Hub cache
    when offline). Raises whatever huggingface_hub raises."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=HUB_FILES)
    return Path(folder)


def _try_spec(spec: str, revision: str | None, local_kind: str, hub_kind: str,
              tried: list[str], label: str) -> CheckpointSource | None:
    """Resolve a folder or repo id; on failure append one line to `tried` and return None."""
    spec = spec.strip()
    repo, rev = split_revision(spec)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        missing = _missing_files(folder)
        if not missing:
            return CheckpointSource(local_kind, folder.resolve())
        tried.append(f"{label} folder {folder}: missing {', '.join(missing)}")
        return None
    if not _REPO_ID.match(repo):
        tried.append(f"{label} {spec!r}: no such folder, and not a Hub repo id (org/name[@revision])")
        return None
    rev = rev or revision
    where = f"{label} Hub repo {repo}@{rev or 'main'}"
    if pinning_required() and not is_pinned(rev):
        tried.append(f"{where}: {ENV_REQUIRE_PINNED} is set and {rev or 'main'!r} is not a commit hash "
                     f"(pin it: {repo}@<40-hex commit>)")
        return None
    try:
        snapshot = download_checkpoint(repo, rev)
    except Exception as err:  # offline without a cached snapshot, unknown repo/revision, network
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        offline = " (HF_HUB_OFFLINE is set; only the local Hub cache was searched)" \
            if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on") else ""
        tried.append(f"{where}: {type(err).__name__}: {reason}{offline}")
        return None
    missing = _missing_files(snapshot)
    if missing:
        tried.append(f"{where}: snapshot {snapshot} lacks {', '.join(missing)}")
        return None
    return CheckpointSource(hub_kind, snapshot, repo_id=repo, revision=rev, commit=snapshot.name)


def resolve_checkpoint(explicit: str | os.PathLike | None = None, *,
                       weights_dir: str | os.PathLike | None = None) -> CheckpointSource:
    """Decide which checkpoint to load (see the module docstring); raise WeightsNotFoundError
    listing every place tried. `weights_dir` replaces weights/ (tests)."""
    tried: list[str] = []
    if explicit is not None and str(explicit).strip():
        source = _try_spec(str(explicit), None, "explicit-local", "hub", tried, "argument")
        if source:
            return source
        raise WeightsNotFoundError(
            "no usable checkpoint: " + "; ".join(tried)
            + f" (a checkpoint was named explicitly, so {ENV_CHECKPOINT} and bundled weights were "
            "not used); " + HOW_TO_FIX
        )

    tried.append("argument: none given")
    env_spec = os.environ.get(ENV_CHECKPOINT, "").strip()
    env_rev = os.environ.get(ENV_REVISION, "").strip() or None
    if env_spec:
        source = _try_spec(env_spec, env_rev, "env", "env", tried, ENV_CHECKPOINT)
        if source:
            return source
        raise WeightsNotFoundError(
            "no usable checkpoint: " + "; ".join(tried)
            + f" (unset {ENV_CHECKPOINT} to use bundled weights); " + HOW_TO_FIX
        )
    tried.append(f"{ENV_CHECKPOINT}: not set")

    base = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    for name in BUNDLED_CHECKPOINTS:
        folder = base / name
        if not folder.is_dir():
            tried.append(f"bundled {folder}: no such folder")
            continue
        missing = _missing_files(folder)
        if missing:
            tried.append(f"bundled {folder}: missing {', '.join(missing)}")
            continue
        return CheckpointSource("bundled", folder.resolve())
    raise WeightsNotFoundError("no model weights found; tried: " + "; ".join(tried) + "; " + HOW_TO_FIX)
