"""What bounds the app's per-visitor memory and files, in one place (app.py applies it).

A visitor's prepared faces (aligned crops, parsed masks, embeddings) and last generation live in
gr.State, i.e. in Gradio's per-session store. Three limits keep that store bounded:

- time_to_live (SESSION_TTL_S) on every gr.State: a value is dropped that long after it was set;
- free_session_on_unload: when a visitor closes or reloads the tab (the heartbeat connection
  drops), their whole session is removed at once, instead of Gradio's default of keeping closed
  sessions' state for an hour;
- MAX_SESSIONS (launch(state_session_capacity=...)): at most that many sessions are held. When the
  store is full, the least recently used session that holds nothing (no prepared face, no
  generation: every failed or junk request makes one) is evicted first; a visitor's prepared faces
  go only when every held session has some (GuardedBlocks / GuardedStateHolder), so a flood of
  new session ids cannot push real visitors out.

Uploaded files and served outputs land in Gradio's cache and are deleted by
gr.Blocks(delete_cache=delete_cache_schedule()): every `frequency` seconds, files older than `age`
seconds go. Uploads are capped at MAX_UPLOAD (launch(max_file_size=...)); decoding has its own
pixel budget (idface.images.MAX_PIXELS).

Environment overrides (tests and small Spaces): IDFACE_SESSION_TTL_S, IDFACE_MAX_SESSIONS,
IDFACE_DELETE_CACHE="frequency,age", IDFACE_MAX_UPLOAD (e.g. "25mb").
"""

from __future__ import annotations

import logging
import os

import gradio as gr
from gradio.state_holder import StateHolder

log = logging.getLogger(__name__)

SESSION_TTL_S = int(os.environ.get("IDFACE_SESSION_TTL_S", "3600"))
MAX_SESSIONS = int(os.environ.get("IDFACE_MAX_SESSIONS", "200"))
MAX_UPLOAD = os.environ.get("IDFACE_MAX_UPLOAD", "25mb")
DEFAULT_DELETE_CACHE = (300, 900)  # every 5 min, files older than 15 min


def delete_cache_schedule() -> tuple[int, int]:
    """(frequency, age) in seconds for gr.Blocks(delete_cache=...); IDFACE_DELETE_CACHE overrides."""
    spec = os.environ.get("IDFACE_DELETE_CACHE", "").strip()
    if not spec:
        return DEFAULT_DELETE_CACHE
    try:
        frequency, age = (int(v) for v in spec.split(","))
    except ValueError:
        log.warning("IDFACE_DELETE_CACHE=%r is not 'frequency,age' in seconds; using %s", spec, DEFAULT_DELETE_CACHE)
        return DEFAULT_DELETE_CACHE
    return max(1, frequency), max(0, age)


def launch_limits() -> dict:
    """launch() keywords bounding sessions and uploads."""
    return dict(state_session_capacity=MAX_SESSIONS, max_file_size=MAX_UPLOAD)


def free_session(demo, session_hash: str) -> bool:
    """Drop every gr.State value and the session entry of `session_hash`. True if it existed."""
    holder = getattr(demo, "state_holder", None)
    if holder is None or session_hash not in holder:
        return False
    holder.delete_state(session_hash)  # runs each State's delete_callback
    with holder.lock:
        holder.session_data.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)
    return True


def free_session_on_unload(demo) -> None:
    """Register a demo.unload handler that frees the leaving visitor's session at once."""
    def free(request: gr.Request) -> None:
        session_hash = getattr(request, "session_hash", None)
        if session_hash:
            free_session(demo, session_hash)

    demo.unload(free)


def session_holds_something(session) -> bool:
    """True when any gr.State of the session holds a value (a prepared face, a generation)."""
    return any(value is not None for value in getattr(session, "state_data", {}).values())


class GuardedStateHolder(StateHolder):
    """Gradio's session store, evicting sessions that hold nothing before any that holds a
    visitor's faces (Gradio's own evicts the least recently used, whatever it holds)."""

    def update(self, session_id: str):
        with self.lock:
            if session_id in self.session_data:
                self.session_data.move_to_end(session_id)
            while len(self.session_data) > self.capacity:
                victim = next((sid for sid, sess in self.session_data.items()
                               if sid != session_id and not session_holds_something(sess)), None)
                if victim is None:  # every held session has something: least recently used goes
                    victim = next(iter(self.session_data))
                self.session_data.pop(victim)
                self.time_last_used.pop(victim, None)


class GuardedBlocks(gr.Blocks):
    """gr.Blocks whose session store (created by Gradio at launch) is a GuardedStateHolder."""

    @property
    def state_holder(self) -> StateHolder:
        return self.__dict__["_idface_state_holder"]

    @state_holder.setter
    def state_holder(self, holder: StateHolder) -> None:
        if type(holder) is StateHolder:
            holder.__class__ = GuardedStateHolder  # same data, our eviction rule
        self.__dict__["_idface_state_holder"] = holder
