"""Token selection against the peers, in one process.

- exact top-k of f32 rows: tokenroute.topk(x, k) (position-ordered output, ties to the
  lower index, NaN lowest) vs torch.topk(x, k, sorted=False), numpy.argpartition(x, n - k)
  and ONNX Runtime TopK (sorted=0), each in its cheapest form (unsorted output, no tie
  rule); the vocabulary row n = 50257, k = 50, one row and 32 rows batched; n in
  {4096, 131072, 1048576} with k in {64, n/10, n/2}; and a row of 64 with k = 1, the
  per-call floor of each Python binding (a large part of every time at n = 4096);
- threshold selection over 1M f32 at 10% and 50% selected: tokenroute.threshold(s, tau)
  vs np.flatnonzero(s > tau) and torch.nonzero(s > tau).

tokenroute's time is the public wrapper's, as users call it (outputs allocated); the raw
C call (the declared ctypes function, arguments converted once, outputs preallocated) is
beside it. All the implementations of a case are timed interleaved.

Every peer's selection is checked against ours (the same multiset of scores per row).

`run(threads)` returns Result rows; with threads > 1 the peers use that many threads and
tokenroute splits a batch's rows across that many Python threads (a single row stays on
one thread: selection of one row is single-threaded by design).
Usage: TOKENROUTE_ISA=avx512 python benches/peers/select_peers.py [threads] [--quick]
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import sys

import numpy as np
import torch
from onnx import TensorProto, helper

from common import Result, addr, chunks, interleaved, load_package, ort_session, run_parallel, set_threads, table

tr = load_package()
lib = tr.lib()


def ort_topk(rows, n, k, threads):
    g = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=1, sorted=0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, n])],
                          [helper.make_tensor_value_info("v", TensorProto.FLOAT, [rows, k]),
                           helper.make_tensor_value_info("i", TensorProto.INT64, [rows, k])],
                          [helper.make_tensor("k", TensorProto.INT64, [1], [k])])
    return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)


def same_selection(x, ours, theirs):
    """The same multiset of selected scores per row (ties may pick other indices)."""
    a = np.sort(np.take_along_axis(x, ours.astype(np.int64), axis=-1), axis=-1)
    b = np.sort(np.take_along_axis(x, theirs.astype(np.int64), axis=-1), axis=-1)
    return np.array_equal(a, b)


def topk_case(rows, n, k, label_k, threads, budget):
    x = np.random.default_rng(n + k).standard_normal((rows, n)).astype(np.float32)
    xs = x[0] if rows == 1 else x
    out = np.empty((rows, k), np.uint32)
    parts = chunks(rows, threads)
    # Raw: each thread's rows, with (NULL, 0) workspace (the calling thread's reusable
    # buffer); arguments converted once, so the timing holds only the call itself.
    px, pout = addr(x), addr(out)
    raw_args = [(px + 4 * a * n, b - a, n, n, k, None, pout + 4 * a * k, k, None, None, 0) for a, b in parts]
    for args in raw_args:
        assert lib.tkr_topk_f32(*args) == 0
    raw_calls = [lambda args=args: lib.tkr_topk_f32(*args) for args in raw_args]
    # The wrapper as users call it: tokenroute.topk(scores, k) (the indices allocated).
    if rows == 1:
        wrapper_calls = [lambda: tr.topk(xs, k)]
    else:
        wrapper_calls = [lambda a=a, b=b: tr.topk(x[a:b], k) for a, b in parts]
    ours = tr.topk(xs, k).reshape(rows, k)
    assert k < 2 or np.all(np.diff(ours.astype(np.int64), axis=-1) > 0), "position order"
    assert np.array_equal(ours, out)

    tx = torch.from_numpy(x)
    tv, ti = torch.topk(tx, k, dim=-1, sorted=False)
    assert same_selection(x, ours, ti.numpy())
    kth = n - k
    assert same_selection(x, ours, np.argpartition(x, kth, axis=-1)[..., kth:])
    sess = ort_topk(rows, n, k, threads)
    io = sess.io_binding()
    ov = np.empty((rows, k), np.float32)
    oi = np.empty((rows, k), np.int64)
    io.bind_cpu_input("x", x)
    io.bind_output("v", "cpu", 0, np.float32, [rows, k], addr(ov))
    io.bind_output("i", "cpu", 0, np.int64, [rows, k], addr(oi))
    sess.run_with_iobinding(io)
    assert same_selection(x, ours, oi)
    t = interleaved({
        "ours": lambda: run_parallel(wrapper_calls),
        "raw": lambda: run_parallel(raw_calls),
        "torch.topk": lambda: torch.topk(tx, k, dim=-1, sorted=False, out=(tv, ti)),
        "numpy.argpartition": lambda: np.argpartition(x, kth, axis=-1),
        "onnxruntime TopK": lambda: sess.run_with_iobinding(io),
    }, rounds=41 if n < 10000 else 15, budget=budget * 3, repeat=2)
    size = f"n={n} k={label_k}" if rows == 1 else f"{rows}x n={n} k={label_k}"
    return Result("select", "topk f32", size, threads, t.pop("ours"), t, 4 * rows * n, raw=t.pop("raw"))


def threshold_cases(threads, budget):
    rows = []
    n = 1 << 20
    s = np.random.default_rng(7).uniform(-1, 1, n).astype(np.float32)
    out = np.empty(n, np.uint32)
    count = np.zeros(1, np.uintp)
    ts = torch.from_numpy(s)
    ps, pout, pcount = addr(s), addr(out), addr(count)
    for tau, pct in ((0.8, 10), (0.0, 50)):
        args = (ps, 1, n, n, tau, None, pout, n, pcount)
        assert lib.tkr_threshold_f32(*args) == 0
        want = np.flatnonzero(s > np.float32(tau))
        assert count[0] == len(want) and np.array_equal(out[:count[0]], want)
        assert np.array_equal(tr.threshold(s, tau), want)
        t = interleaved({
            "ours": lambda tau=tau: tr.threshold(s, tau),
            "raw": lambda args=args: lib.tkr_threshold_f32(*args),
            "np.flatnonzero(s > tau)": lambda tau=tau: np.flatnonzero(s > np.float32(tau)),
            "torch.nonzero(s > tau)": lambda tau=tau: torch.nonzero(ts > tau),
        }, rounds=15, budget=budget * 3, repeat=2)
        rows.append(Result("select", f"threshold f32 {pct}% selected", "n=1M", threads, t.pop("ours"), t, 4 * n,
                           "tokenroute.threshold(s, tau): the indices allocated, as the peers' are",
                           raw=t.pop("raw")))
    return rows


def run(threads=1, quick=False):
    set_threads(threads)
    budget = 0.3 if quick else 1.0
    cases = [(1, 64, 1, "1 (call overhead)"), (1, 50257, 50, "50"), (32, 50257, 50, "50")]
    for n in ((4096, 131072) if quick else (4096, 131072, 1 << 20)):
        cases += [(1, n, 64, "64"), (1, n, n // 10, "n/10"), (1, n, n // 2, "n/2")]
    return [topk_case(r, n, k, label, threads, budget) for r, n, k, label in cases] + threshold_cases(threads, budget)


def fmt(t):
    return f"{t * 1e3:.3f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    print(f"tokenroute level: {tr.get_isa()}; threads: {threads}; (Nx) = peer time / tokenroute time\n")
    results = run(threads, quick="--quick" in sys.argv)
    for workload in dict.fromkeys(r.workload.split(" ")[0] for r in results):
        rs = [r for r in results if r.workload.startswith(workload)]
        out = []
        for r in rs:
            cells = [f"{fmt(t)} ({t / r.ours:.1f}x)" if t else "-" for t in r.peers.values()]
            best, name = r.best_peer()
            out.append([f"{r.workload} {r.size}", f"{fmt(r.ours)} ({r.nbytes / r.ours / 1e9:.1f} GB/s)",
                        fmt(r.raw), *cells, f"{best / r.ours:.1f}x ({name})"])
        print(table(out, ["workload", "tokenroute", "raw C call", *rs[0].peers.keys(), "vs best peer"]))
        print()
