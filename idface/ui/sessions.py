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

Files: every file the app writes lives under one per-app folder (claim_app_folder: IDFACE_APP_DIR,
default <tmp>/idface-app-<port>): Gradio's uploads and cache (GRADIO_TEMP_DIR) and the generated
PNGs (IDFACE_OUTPUT_DIR). Claiming it at start-up deletes what a previous run on it left (a crash,
kill -9), and AppFolderSweeper deletes any file in it older than the deletion age, on the same
schedule as delete_cache, whether or not Gradio tracked it. Two apps on one machine (two ports)
never share a folder. UploadBudget (an ASGI middleware) bounds the bytes of one upload request
(MAX_UPLOAD_REQUEST, all files together) and of one client address per deletion period
(MAX_UPLOAD_PER_CLIENT), from the Content-Length header, before anything is written.

Environment overrides (tests and small Spaces): IDFACE_SESSION_TTL_S, IDFACE_MAX_SESSIONS,
IDFACE_DELETE_CACHE="frequency,age", IDFACE_MAX_UPLOAD (e.g. "25mb"),
IDFACE_MAX_EXPENSIVE_PER_CLIENT, IDFACE_MAX_EXPENSIVE_PENDING, IDFACE_APP_DIR,
IDFACE_MAX_UPLOAD_REQUEST, IDFACE_MAX_UPLOAD_PER_CLIENT.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

import gradio as gr
from gradio.queueing import Queue
from gradio.state_holder import StateHolder

log = logging.getLogger(__name__)

SESSION_TTL_S = int(os.environ.get("IDFACE_SESSION_TTL_S", "3600"))
MAX_SESSIONS = int(os.environ.get("IDFACE_MAX_SESSIONS", "200"))
MAX_UPLOAD = os.environ.get("IDFACE_MAX_UPLOAD", "25mb")
MAX_UPLOAD_REQUEST = os.environ.get("IDFACE_MAX_UPLOAD_REQUEST", "30mb")
MAX_UPLOAD_PER_CLIENT = os.environ.get("IDFACE_MAX_UPLOAD_PER_CLIENT", "200mb")
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


def parse_size(text: str) -> int:
    """'25mb', '1gb', '500kb', '1234' -> bytes."""
    t = text.strip().lower()
    for suffix, factor in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("b", 1)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * factor)
    return int(t)


def launch_limits() -> dict:
    """launch() keywords bounding sessions and uploads (GuardedBlocks.launch adds UploadBudget)."""
    return dict(state_session_capacity=MAX_SESSIONS, max_file_size=MAX_UPLOAD)


def upload_budget_middleware():
    from starlette.middleware import Middleware

    return Middleware(UploadBudget, per_request=parse_size(MAX_UPLOAD_REQUEST),
                      per_client=parse_size(MAX_UPLOAD_PER_CLIENT), window_s=delete_cache_schedule()[1] or 900)


class UploadBudget:
    """ASGI middleware: refuse an upload request whose declared size is over `per_request`, or
    that would take its client address over `per_client` bytes within `window_s` seconds."""

    def __init__(self, app, per_request: int, per_client: int, window_s: float):
        self.app, self.per_request, self.per_client, self.window_s = app, per_request, per_client, window_s
        self.sent: dict[str, deque] = defaultdict(deque)  # address -> (time, bytes), oldest first
        self.lock = threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith("/upload"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            problem = self.problem(headers, scope)
            if problem is not None:
                status, text = problem
                log.info("upload refused: %s", text)  # no file names, no paths
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": ('{"detail": "%s"}' % text).encode()})
                return
        await self.app(scope, receive, send)

    def problem(self, headers: dict, scope) -> tuple[int, str] | None:
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            return 411, "an upload must declare its size (Content-Length)"
        size = int(length)
        if size > self.per_request:
            return 413, (f"this upload is {size / 1e6:.0f} MB in one request; at most "
                         f"{self.per_request / 1e6:.0f} MB per request (all files together)")
        address = forwarded_or_peer(headers, (scope.get("client") or (None,))[0])
        now = time.monotonic()
        with self.lock:
            sent = self.sent[address]
            while sent and now - sent[0][0] > self.window_s:
                sent.popleft()
            used = sum(n for _, n in sent)
            if used + size > self.per_client:
                return 429, (f"you have uploaded {used / 1e6:.0f} MB in the last {self.window_s / 60:.0f} min; "
                             f"at most {self.per_client / 1e6:.0f} MB: try again later")
            sent.append((now, size))
            if len(self.sent) > 10_000:  # forget idle addresses
                for key in [k for k, v in self.sent.items() if not v]:
                    del self.sent[key]
        return None


def app_folder(port: int) -> Path:
    """The folder this app instance writes every file into (IDFACE_APP_DIR overrides)."""
    return Path(os.environ.get("IDFACE_APP_DIR") or Path(tempfile.gettempdir()) / f"idface-app-{port}")


def claim_app_folder(folder: Path) -> Path:
    """Empty `folder` (what a previous run on it left: uploads, outputs), create it, and point
    Gradio's cache (GRADIO_TEMP_DIR) and idface's outputs (IDFACE_OUTPUT_DIR) into it. Call before
    the gr.Blocks is built (Gradio reads its cache folder then)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed the files a previous run left in %s", folder)
    (folder / "uploads").mkdir(parents=True, exist_ok=True)
    (folder / "outputs").mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "uploads")
    os.environ["IDFACE_OUTPUT_DIR"] = str(folder / "outputs")
    return folder


EMPTY_SPOOL_AGE_S = 60


class AppFolderSweeper(threading.Thread):
    """Every `frequency` s, delete each file under `folder` older than `age` s (and empty folders)."""

    def __init__(self, folder: Path, frequency: float, age: float):
        super().__init__(daemon=True, name="idface-app-folder-sweeper")
        self.folder, self.frequency, self.age = Path(folder), frequency, age
        self.stopped = threading.Event()

    def sweep(self) -> int:
        now, removed = time.time(), 0
        for path in sorted(self.folder.rglob("*"), key=lambda p: -len(p.parts)):
            try:
                if path.is_file() and now - path.stat().st_mtime > self.age:
                    path.unlink()
                    removed += 1
                elif path.is_file() and path.parent == self.folder / "uploads" and path.name.startswith("tmp") \
                        and path.stat().st_size == 0 and now - path.stat().st_mtime > EMPTY_SPOOL_AGE_S:
                    # Gradio's upload parser leaves an empty spool file per upload
                    path.unlink()
                    removed += 1
                elif path.is_dir() and path.parent != self.folder and not any(path.iterdir()):
                    path.rmdir()
            except OSError:  # gone meanwhile, or in use
                pass
        return removed

    def run(self) -> None:
        while not self.stopped.wait(self.frequency):
            self.sweep()


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


def forwarded_or_peer(headers, peer: str | None) -> str:
    """The caller's address: the first X-Forwarded-For hop behind a proxy (a Space), else the peer."""
    forwarded = headers.get("x-forwarded-for", "") if hasattr(headers, "get") else ""
    return forwarded.split(",")[0].strip() if forwarded else (peer or "unknown")


def client_address(request) -> str:
    """client address of a fastapi / gradio request (see forwarded_or_peer)."""
    return forwarded_or_peer(getattr(request, "headers", None) or {},
                             getattr(getattr(request, "client", None), "host", None))


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
    """gr.Blocks whose session store (created by Gradio at launch) is a GuardedStateHolder, whose
    queue is a GuardedQueue, and whose server refuses uploads over the UploadBudget."""

    def launch(self, *args, **kwargs):
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})  # a fresh dict: Gradio adds to it
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), upload_budget_middleware()]
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

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
