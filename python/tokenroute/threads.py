"""Threads: the built-in pool's size and the calling thread's cap.

Every call splits its work into units fixed by its shape alone, so results are
bit-identical for every thread count (see the README, "Threads"). The pool starts with
one thread (or ``TOKENROUTE_NUM_THREADS``: a count or ``auto``); calls release the GIL,
so Python threads may call concurrently.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import c_int32, c_size_t, c_uint32, c_void_p

from ._ffi import TokenrouteError, check, declare, lib

#: ``tkr_task_fn`` and ``tkr_parallel_for_fn`` (for engines that pass their own pool
#: through the raw functions ``lib().tkr_set_parallel_for`` / ``tkr_set_thread_parallel_for``).
TASK_FN = ctypes.CFUNCTYPE(None, c_void_p, c_size_t)
PARALLEL_FOR_FN = ctypes.CFUNCTYPE(c_int32, c_void_p, c_size_t, TASK_FN, c_void_p)

declare("tkr_set_num_threads", c_uint32, [c_size_t])
declare("tkr_get_num_threads", c_size_t, [])
declare("tkr_set_thread_num_threads", c_uint32, [c_size_t])
declare("tkr_set_parallel_for", c_uint32, [PARALLEL_FOR_FN, c_void_p])
declare("tkr_set_thread_parallel_for", c_uint32, [PARALLEL_FOR_FN, c_void_p])


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _count(n, function: str) -> int:
    if isinstance(n, str):
        if n != "auto":
            raise TokenrouteError(2, function, f"thread count {n!r} is not a number or 'auto'")
        return available_cores()
    n = int(n)
    if n < 0:
        raise TokenrouteError(2, function, "negative thread count")
    return n


def set_num_threads(n) -> None:
    """Sets the built-in pool's thread count, the calling thread included (``"auto"``:
    every available core; 1: every call on its calling thread). Raises
    :class:`TokenrouteError` ``TKR_STATUS_INVALID_ARGUMENT`` for 0 or more than 1024."""
    check(lib().tkr_set_num_threads(_count(n, "tkr_set_num_threads")), "tkr_set_num_threads")


def get_num_threads() -> int:
    """The built-in pool's thread count (the calling thread included)."""
    return lib().tkr_get_num_threads()


#: The cap set by :func:`set_thread_num_threads` on each Python thread (0: none).
_CAP = threading.local()


def set_thread_num_threads(n) -> None:
    """Caps the threads used by the calls of the calling (Python) thread at ``n`` (1:
    inline; ``None`` or 0 removes the cap). It never grows the pool."""
    n = 0 if n is None else _count(n, "tkr_set_thread_num_threads")
    check(lib().tkr_set_thread_num_threads(n), "tkr_set_thread_num_threads")
    _CAP.n = n


def get_thread_num_threads() -> int:
    """The calling Python thread's cap set by :func:`set_thread_num_threads` (0: none)."""
    return getattr(_CAP, "n", 0)


class thread_cap:
    """``with thread_cap(n):`` caps the calling thread's calls at ``n`` threads, growing
    the pool to ``n`` when it is smaller, and restores the thread's previous cap after
    (the pool keeps its size). ``n <= 1`` runs the calls inline."""

    def __init__(self, n: int):
        self.n = max(int(n), 1)

    def __enter__(self):
        self.prev = get_thread_num_threads()
        if self.n > 1 and get_num_threads() < self.n:
            set_num_threads(self.n)
        if self.n != self.prev:
            set_thread_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.n != self.prev:
            set_thread_num_threads(self.prev)
        return False
