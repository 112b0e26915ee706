"""Shared helpers of the peer comparison scripts: the tokenroute package (its public
wrappers, and the raw ctypes functions it declares), timing, single-threaded peers, and
one-node ONNX models."""
import os
import pathlib
import sys
import time

for _v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # they slow numpy here
    os.environ.pop(_v, None)

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def load_package():
    """The tokenroute package of this repository (python/), on `$TOKENROUTE_LIB` or the
    repository's target/release library. The scripts time its public wrappers (what
    users run) and, beside them, the raw C calls through the ctypes functions it
    declares (`tokenroute.lib()`), with their arguments converted once."""
    if "TOKENROUTE_LIB" not in os.environ:
        os.environ["TOKENROUTE_LIB"] = str(ROOT / "target" / "release" / "libtokenroute.so")
    sys.path.insert(0, str(ROOT / "python"))
    import tokenroute
    return tokenroute


def addr(a, byte_offset=0):
    """The data address of an array as a plain int (numpy's `.ctypes` costs about a
    microsecond: read it once, outside the timed calls)."""
    return a.__array_interface__["data"][0] + byte_offset


#: The clock of a timed call: the process's CPU time in single-threaded passes (on a
#: shared machine the time spent waiting for a core is not the call's cost; page faults
#: and other kernel time are included), wall time when several threads work (set by
#: set_threads).
CLOCK = time.perf_counter


def median_time(fn, min_reps=5, budget=1.0, max_reps=200):
    """Median time of fn() (by CLOCK) after one warm-up call."""
    fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < max_reps and (len(ts) < min_reps or time.perf_counter() - start < budget):
        t = CLOCK()
        fn()
        ts.append(CLOCK() - t)
    ts.sort()
    return ts[len(ts) // 2]


def interleaved(fns, rounds=15, budget=4.0, before=None, repeat=1):
    """Median seconds (by CLOCK) of each callable in `fns` (name -> fn or None), timed round-robin:
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
            t = CLOCK()
            f()
            ts[k].append(CLOCK() - t)
        r += 1
    out = {}
    for k in fns:
        if k in ts:
            v = sorted(ts[k])
            out[k] = v[len(v) // 2]
        else:
            out[k] = None
    return out


#: With n > 1 threads, tokenroute makes one call on its own pool of n threads
#: (`tokenroute.set_num_threads(n)`: what users run) unless TOKENROUTE_PEERS_SPLIT=python,
#: which splits the rows across n Python threads, one single-threaded call each (how an
#: engine with its own pool would call it).
PYTHON_SPLIT = os.environ.get("TOKENROUTE_PEERS_SPLIT") == "python"


def set_threads(n):
    """Peers single-threaded (n = 1) or on n cores, tokenroute's pool likewise; the clock
    to match (CLOCK)."""
    global CLOCK
    import torch
    torch.set_num_threads(n)
    load_package().set_num_threads(1 if PYTHON_SPLIT else n)
    CLOCK = time.process_time if n == 1 else time.perf_counter


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
    """One workload: our time through the public wrapper (`ours`), the raw C call's time
    (`raw`, the same work through the declared ctypes function with its arguments
    converted once; None when not timed), each peer's time (None when a peer lacks the
    op), and the work it does for the throughput: bytes (unit "GB/s") or flops
    ("GFLOP/s")."""

    def __init__(self, family, workload, size, threads, ours, peers, nbytes, note="", unit="GB/s", raw=None):
        self.family, self.workload, self.size, self.threads = family, workload, size, threads
        self.ours, self.peers, self.nbytes, self.note, self.unit = ours, peers, nbytes, note, unit
        self.raw = raw

    def to_dict(self):
        return {"family": self.family, "workload": self.workload, "size": self.size, "threads": self.threads,
                "ours": self.ours, "raw": self.raw, "peers": self.peers, "work": self.nbytes, "unit": self.unit,
                "note": self.note}

    @classmethod
    def from_dict(cls, d):
        return cls(d["family"], d["workload"], d["size"], d["threads"], d["ours"], d["peers"], d["work"],
                   d.get("note", ""), d.get("unit", "GB/s"), d.get("raw"))

    def best_peer(self):
        times = [(t, name) for name, t in self.peers.items() if t is not None]
        return min(times) if times else (None, None)
