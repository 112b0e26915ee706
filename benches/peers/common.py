"""Shared helpers of the peer comparison scripts: loading the built library through
ctypes, timing, single-threaded peers, and one-node ONNX models."""
import ctypes
import os
import pathlib
import time

for _v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # they slow numpy here
    os.environ.pop(_v, None)

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_library():
    path = os.environ.get("TOKENROUTE_LIB") or str(ROOT / "target" / "release" / "libtokenroute.so")
    return ctypes.CDLL(path)


def ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def median_time(fn, min_reps=5, budget=1.0, max_reps=200):
    """Median wall time of fn() after one warm-up call."""
    fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < max_reps and (len(ts) < min_reps or time.perf_counter() - start < budget):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def interleaved(fns, rounds=15, budget=4.0, before=None, repeat=1):
    """Median seconds of each callable in `fns` (name -> fn or None), timed round-robin:
    one warm-up call each, then rounds of one call each, until `rounds` rounds or the
    budget (at least 5 rounds), so that a busy machine slows them alike and the ratios
    hold. `before` (untimed) runs before every timed call, e.g. a cache eviction.
    repeat > 1: each timed call follows repeat - 1 untimed calls of the same function,
    so that it finds the caches as a hot loop leaves them (its own data, not the previous
    implementation's)."""
    live = {k: f for k, f in fns.items() if f is not None}
    for f in live.values():
        f()
    ts = {k: [] for k in live}
    start = time.perf_counter()
    r = 0
    while r < rounds and (r < 5 or time.perf_counter() - start < budget):
        for k, f in live.items():
            for _ in range(repeat - 1):
                f()
            if before is not None:
                before()
            t = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t)
        r += 1
    out = {}
    for k in fns:
        if k in ts:
            v = sorted(ts[k])
            out[k] = v[len(v) // 2]
        else:
            out[k] = None
    return out


#: With n > 1 threads, tokenroute runs one call on its own pool of n threads
#: (tkr_set_num_threads: what users run) unless TOKENROUTE_PEERS_SPLIT=python, which
#: splits the rows across n Python threads, one single-threaded call each (how an engine
#: with its own pool would call it).
PYTHON_SPLIT = os.environ.get("TOKENROUTE_PEERS_SPLIT") == "python"


def set_threads(n):
    """Peers single-threaded (n = 1) or on n cores; tokenroute's pool likewise."""
    import torch
    torch.set_num_threads(n)
    lib = load_library()
    lib.tkr_set_num_threads.restype = ctypes.c_uint32
    lib.tkr_set_num_threads.argtypes = [ctypes.c_size_t]
    st = lib.tkr_set_num_threads(1 if PYTHON_SPLIT else n)
    assert st == 0, f"tkr_set_num_threads({n}): status {st}"


def ort_session(model, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def table(rows, headers):
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


_POOL = None


def run_parallel(calls):
    """Runs the zero-argument callables concurrently on a persistent pool of Python
    threads (ctypes releases the GIL during the foreign call) and waits for all: how an
    engine splits a kernel's rows across its own threads."""
    global _POOL
    if len(calls) == 1:
        calls[0]()
        return
    if _POOL is None or _POOL._max_workers < len(calls):
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=len(calls))
    for f in [_POOL.submit(c) for c in calls]:
        f.result()


def chunks(n, parts):
    """`parts` contiguous (start, stop) ranges covering 0..n for the Python-thread split
    (TOKENROUTE_PEERS_SPLIT=python); otherwise one range: the library's pool splits."""
    if not PYTHON_SPLIT:
        parts = 1
    step = -(-n // parts)
    return [(i, min(n, i + step)) for i in range(0, n, step)] or [(0, 0)]


class Result:
    """One workload: our time, each peer's time (None when a peer lacks the op), and
    the work it does for the throughput: bytes (unit "GB/s") or flops ("GFLOP/s")."""

    def __init__(self, family, workload, size, threads, ours, peers, nbytes, note="", unit="GB/s"):
        self.family, self.workload, self.size, self.threads = family, workload, size, threads
        self.ours, self.peers, self.nbytes, self.note, self.unit = ours, peers, nbytes, note, unit

    def to_dict(self):
        return {"family": self.family, "workload": self.workload, "size": self.size, "threads": self.threads,
                "ours": self.ours, "peers": self.peers, "work": self.nbytes, "unit": self.unit, "note": self.note}

    @classmethod
    def from_dict(cls, d):
        return cls(d["family"], d["workload"], d["size"], d["threads"], d["ours"], d["peers"], d["work"],
                   d.get("note", ""), d.get("unit", "GB/s"))

    def best_peer(self):
        times = [(t, name) for name, t in self.peers.items() if t is not None]
        return min(times) if times else (None, None)
