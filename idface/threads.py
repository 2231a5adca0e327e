"""How many threads torch uses in THIS thread only, for the duration of a block.

    with thread_local_torch_threads(1):
        fit ...        # this thread's ops run on one thread; other threads keep their setting

Why not torch.set_num_threads: it changes the process-wide default, and every thread that first
runs a torch op while it is changed keeps that count for the rest of its life (torch copies the
default into a thread's OpenMP setting once, on first use). In the app a fit runs in one of
gradio's worker threads: any worker started during a fit would stay single-threaded afterwards,
and a concurrent stroke would run on the fit's count. OpenMP's thread count and MKL's local count
are per-thread settings; this sets those two for the calling thread only and restores them.

Used by fitting (a fit in a gradio worker must not change other workers) and by the small npm
face graphs (BlazeFace, FaceMesh, selfie, meet: hundreds of small ops, each ending in a barrier
with two threads; on the loaded 2-core machine, load 5-7, FaceMesh took 33 ms on one thread and
1.3 s on two, selfie 23 ms vs 0.44 s, meet 14 ms vs 0.11 s; scripts/bench_parser.py).

Where the libraries are not found (a torch build without GNU OpenMP or MKL), the block runs with
the thread's current setting and `applied` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import logging
import os
import threading
from typing import Iterator

import torch

log = logging.getLogger(__name__)

_LIBS: tuple | None = None
_LIBS_LOCK = threading.Lock()


def _libraries():
    """(omp_set_num_threads, MKL_Set_Num_Threads_Local or None) from torch's own libraries, or None."""
    global _LIBS
    with _LIBS_LOCK:
        if _LIBS is not None:
            return _LIBS or None
        found: tuple = ()
        try:
            lib = os.path.join(os.path.dirname(torch.__file__), "lib")
            gomp = sorted(glob.glob(os.path.join(lib, "libgomp*.so*")))
            torch_cpu = os.path.join(lib, "libtorch_cpu.so")
            if gomp and os.path.isfile(torch_cpu):
                omp = ctypes.CDLL(gomp[0]).omp_set_num_threads    # the copy torch itself loaded
                omp.argtypes, omp.restype = [ctypes.c_int], None
                mkl = getattr(ctypes.CDLL(torch_cpu), "MKL_Set_Num_Threads_Local", None)  # C API (int)
                if mkl is not None:
                    mkl.argtypes, mkl.restype = [ctypes.c_int], ctypes.c_int
                found = (omp, mkl)
        except OSError as err:
            log.debug("per-thread torch threads unavailable: %s", err)
        _LIBS = found
        return found or None


@contextlib.contextmanager
def thread_local_torch_threads(n: int | None) -> Iterator[bool]:
    """Run the block with `n` intra-op threads in the calling thread only (None: as it is).
    Yields whether the setting was applied."""
    libs = _libraries() if n is not None else None
    if libs is None:
        yield False
        return
    omp, mkl = libs
    before = torch.get_num_threads()         # also makes torch initialise this thread's setting first
    omp(int(n))
    mkl_before = mkl(int(n)) if mkl is not None else None
    try:
        yield True
    finally:
        omp(before)
        if mkl is not None:
            mkl(mkl_before)
