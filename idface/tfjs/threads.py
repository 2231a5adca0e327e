"""Run the small npm graphs on one torch thread.

The face graphs (BlazeFace, FaceMesh, selfie, meet) are hundreds of small ops: with two intra-op
threads every op ends in a barrier, and on a loaded machine a barrier waits for a descheduled
thread. Measured on the project's shared 2-core machine (load average 5-7): FaceMesh 33 ms on one
thread, 1.3 s on two; selfie 23 ms vs 0.44 s; meet 14 ms vs 0.11 s (scripts/bench_parser.py).

    with single_threaded():
        out = graph(x)

torch's thread count is process-wide, so the change is held under a lock and undone on exit;
other torch work running at that moment also runs on one thread for those milliseconds.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

_LOCK = threading.RLock()


@contextmanager
def single_threaded():
    import torch

    with _LOCK:
        before = torch.get_num_threads()
        if before != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if before != 1:
                torch.set_num_threads(before)
