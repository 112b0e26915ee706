"""What the library keeps after a large call made through the package: at most its
documented per-thread scratch (TKR_THREAD_SCRATCH_CAP per kind) and one spare of at
most TKR_SPARE_SCRATCH_CAP; tokenroute.release_thread_buffers() frees the calling
thread's buffers and the spare. Resident memory is read from /proc (Linux)."""

import os
import threading

import numpy as np
import pytest

import tokenroute

MIB = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_a_large_topk_leaves_at_most_the_documented_scratch(rng):
    # 16M scores, k = 100,000 (no chunking): a 128 MiB workspace, above the spare's cap,
    # so nothing of it may stay (before the cap, the thread kept all of it).
    x = rng.random(16 << 20, dtype=np.float32)
    tokenroute.release_thread_buffers()
    base = rss()
    idx = tokenroute.topk(x, 100_000)
    kept = rss() - base - idx.nbytes
    assert kept < 32 * MIB, f"top-k over 16M scores kept {kept / MIB:.1f} MiB"
    # The same from another thread, which ends: nothing of its scratch stays.
    t = threading.Thread(target=lambda: tokenroute.topk(x, 100_000))
    t.start()
    t.join()
    kept = rss() - base - idx.nbytes
    assert kept < 32 * MIB, f"a finished thread's top-k kept {kept / MIB:.1f} MiB"
    tokenroute.release_thread_buffers()
    # Calls still work after a release (the scratch comes back on demand).
    assert np.array_equal(np.sort(tokenroute.topk(x, 100_000)), np.sort(idx))
