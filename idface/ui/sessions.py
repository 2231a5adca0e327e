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

Expensive calls (concealment; EXPENSIVE_CONCURRENCY_IDS) run in their own concurrency slot, so
generation stays responsive while they work, and are admitted by GuardedQueue: at most
MAX_EXPENSIVE_PER_CLIENT waiting or running per client address and MAX_EXPENSIVE_PENDING in all;
they do not count against the queue's max_size, which stays for generation and face preparation.

Environment overrides (tests and small Spaces): IDFACE_SESSION_TTL_S, IDFACE_MAX_SESSIONS,
IDFACE_DELETE_CACHE="frequency,age", IDFACE_MAX_UPLOAD (e.g. "25mb"),
IDFACE_MAX_EXPENSIVE_PER_CLIENT, IDFACE_MAX_EXPENSIVE_PENDING.
"""

from __future__ import annotations

import logging
import os

import gradio as gr
from gradio.queueing import Queue
from gradio.state_holder import StateHolder

log = logging.getLogger(__name__)

SESSION_TTL_S = int(os.environ.get("IDFACE_SESSION_TTL_S", "3600"))
MAX_SESSIONS = int(os.environ.get("IDFACE_MAX_SESSIONS", "200"))
MAX_UPLOAD = os.environ.get("IDFACE_MAX_UPLOAD", "25mb")
DEFAULT_DELETE_CACHE = (300, 900)  # every 5 min, files older than 15 min
EXPENSIVE_CONCURRENCY_IDS = ("conceal", "fit")
MAX_EXPENSIVE_PER_CLIENT = int(os.environ.get("IDFACE_MAX_EXPENSIVE_PER_CLIENT", "1"))
MAX_EXPENSIVE_PENDING = int(os.environ.get("IDFACE_MAX_EXPENSIVE_PENDING", "4"))


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


def client_address(request) -> str:
    """The caller's address: the first X-Forwarded-For hop behind a proxy (a Space), else the peer."""
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for", "") if hasattr(headers, "get") else ""
    if forwarded:
        return forwarded.split(",")[0].strip()
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


class GuardedQueue(Queue):
    """Gradio's queue with admission for expensive calls (see the module docstring)."""

    idface_max_size: int | None = None

    def expensive_events(self, concurrency_id: str) -> list:
        waiting = list(getattr(self.event_queue_per_concurrency_id.get(concurrency_id), "queue", []))
        running = [e for job in self.active_jobs if job for e in job if e.concurrency_id == concurrency_id]
        return waiting + running

    def admission_problem(self, fn, request) -> tuple[str, str] | None:
        """-> (message, gradio state) refusing the call, or None to admit it."""
        cid = fn.concurrency_id
        if cid in EXPENSIVE_CONCURRENCY_IDS:
            pending = self.expensive_events(cid)
            mine = sum(client_address(e.request) == client_address(request) for e in pending)
            if mine >= MAX_EXPENSIVE_PER_CLIENT:
                return (f"you already have {mine} {cid} call(s) waiting or running; wait for it to finish", "error")
            if len(pending) >= MAX_EXPENSIVE_PENDING:
                return (f"the server is busy with {len(pending)} {cid} calls; try again in a minute", "queue_full")
            return None
        cheap = sum(len(q.queue) for c, q in self.event_queue_per_concurrency_id.items()
                    if c not in EXPENSIVE_CONCURRENCY_IDS)
        if self.idface_max_size is not None and cheap >= self.idface_max_size:
            return (f"Queue is full. Max size is {self.idface_max_size} and size is {cheap}.", "queue_full")
        return None

    async def push(self, body, request, username):
        from gradio import route_utils

        if body.fn_index is not None:
            problem = self.admission_problem(route_utils.get_fn(self.blocks, None, body), request)
            if problem is not None:
                return False, problem[0], problem[1]
        return await super().push(body, request, username)


class GuardedBlocks(gr.Blocks):
    """gr.Blocks whose session store (created by Gradio at launch) is a GuardedStateHolder and
    whose queue is a GuardedQueue."""

    def queue(self, *args, **kwargs):
        super().queue(*args, **kwargs)
        if type(self._queue) is Queue:
            self._queue.__class__ = GuardedQueue
            # expensive calls are bounded by their own limits, not by the queue's max_size
            self._queue.idface_max_size, self._queue.max_size = self._queue.max_size, None
        return self

    @property
    def state_holder(self) -> StateHolder:
        return self.__dict__["_idface_state_holder"]

    @state_holder.setter
    def state_holder(self, holder: StateHolder) -> None:
        if type(holder) is StateHolder:
            holder.__class__ = GuardedStateHolder  # same data, our eviction rule
        self.__dict__["_idface_state_holder"] = holder
