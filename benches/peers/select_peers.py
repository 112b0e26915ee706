"""Token selection against the peers, single-threaded, in one process.

- exact top-k of f32 rows: tkr_topk_f32 (position-ordered output, ties to the lower
  index, NaN lowest) vs torch.topk(x, k, sorted=False), numpy.argpartition(x, n - k)
  and ONNX Runtime TopK (sorted=0), each in its cheapest form (unsorted output, no tie
  rule); the vocabulary row n = 50257, k = 50, one row and 32 rows batched; n in
  {4096, 131072, 1048576} with k in {64, n/10, n/2};
- threshold selection over 1M f32 at 10% and 50% selected: tkr_threshold_f32 vs
  np.flatnonzero(s > tau) and torch.nonzero(s > tau).

Every peer's selection is checked against ours (the same multiset of scores).

Usage: TOKENROUTE_ISA=avx512 python benches/peers/select_peers.py [--quick]
"""
import ctypes
import sys

import numpy as np
import torch
from onnx import TensorProto, helper

from common import load_library, median_time, ort_session, ptr, set_threads, table

lib = load_library()
size_t = ctypes.c_size_t
lib.tkr_topk_f32.argtypes = [ctypes.c_void_p, size_t, size_t, size_t, size_t, ctypes.c_void_p,
                             ctypes.c_void_p, size_t, ctypes.c_void_p, ctypes.c_void_p, size_t]
lib.tkr_topk_f32.restype = ctypes.c_uint32
lib.tkr_threshold_f32.argtypes = [ctypes.c_void_p, size_t, size_t, size_t, ctypes.c_float, ctypes.c_void_p,
                                  ctypes.c_void_p, size_t, ctypes.c_void_p]
lib.tkr_threshold_f32.restype = ctypes.c_uint32
lib.tkr_topk_workspace_size.argtypes = [size_t, ctypes.POINTER(size_t)]
lib.tkr_topk_workspace_size.restype = ctypes.c_uint32
lib.tkr_get_isa.restype = ctypes.c_uint32
lib.tkr_isa_name.restype = ctypes.c_char_p
set_threads(1)
isa = lib.tkr_isa_name(lib.tkr_get_isa()).decode()
quick = "--quick" in sys.argv
budget = 0.3 if quick else 1.0


def ort_topk(rows, n, k):
    g = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1, largest=1, sorted=0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, n])],
                          [helper.make_tensor_value_info("v", TensorProto.FLOAT, [rows, k]),
                           helper.make_tensor_value_info("i", TensorProto.INT64, [rows, k])],
                          [helper.make_tensor("k", TensorProto.INT64, [1], [k])])
    return ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def fmt(t):
    return f"{t * 1e3:.3f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"


def same_selection(x, ours, theirs):
    """The same multiset of selected scores per row (ties may pick other indices)."""
    a = np.sort(np.take_along_axis(x, ours.astype(np.int64), axis=-1), axis=-1)
    b = np.sort(np.take_along_axis(x, theirs.astype(np.int64), axis=-1), axis=-1)
    return np.array_equal(a, b)


def topk_row(rows, n, k, label_k):
    x = np.random.default_rng(n + k).standard_normal((rows, n)).astype(np.float32)
    out = np.empty((rows, k), np.uint32)
    ws_bytes = size_t()
    lib.tkr_topk_workspace_size(n, ctypes.byref(ws_bytes))
    ws = np.empty(max(ws_bytes.value // 8, 1), np.uint64)
    args = (ptr(x), rows, n, n, k, None, ptr(out), k, None, ptr(ws), ws_bytes.value)
    assert lib.tkr_topk_f32(*args) == 0
    t_tkr = median_time(lambda: lib.tkr_topk_f32(*args), budget=budget)
    ours = out.copy()
    assert np.all(np.diff(ours.astype(np.int64), axis=-1) > 0), "position order"

    tx = torch.from_numpy(x)
    tv, ti = torch.topk(tx, k, dim=-1, sorted=False)
    assert same_selection(x, ours, ti.numpy())
    t_torch = median_time(lambda: torch.topk(tx, k, dim=-1, sorted=False, out=(tv, ti)), budget=budget)

    kth = n - k
    npi = np.argpartition(x, kth, axis=-1)[..., kth:]
    assert same_selection(x, ours, npi)
    t_np = median_time(lambda: np.argpartition(x, kth, axis=-1), budget=budget, min_reps=3)

    sess = ort_topk(rows, n, k)
    io = sess.io_binding()
    ov = np.empty((rows, k), np.float32)
    oi = np.empty((rows, k), np.int64)
    io.bind_cpu_input("x", x)
    io.bind_output("v", "cpu", 0, np.float32, [rows, k], ov.ctypes.data)
    io.bind_output("i", "cpu", 0, np.int64, [rows, k], oi.ctypes.data)
    sess.run_with_iobinding(io)
    assert same_selection(x, ours, oi)
    t_ort = median_time(lambda: sess.run_with_iobinding(io), budget=budget)

    shape = f"n={n} k={label_k}" if rows == 1 else f"{rows}x n={n} k={label_k}"
    return [shape, fmt(t_tkr), f"{fmt(t_torch)} ({t_torch / t_tkr:.1f}x)", f"{fmt(t_np)} ({t_np / t_tkr:.1f}x)",
            f"{fmt(t_ort)} ({t_ort / t_tkr:.1f}x)"]


# The per-call floor through each Python binding (a row of 64 scores, k = 1): at
# n = 4096 it is a large part of every time below.
rows = [topk_row(1, 64, 1, "1 (call overhead)"), topk_row(1, 50257, 50, "50"), topk_row(32, 50257, 50, "50")]
for n in ((4096, 131072) if quick else (4096, 131072, 1 << 20)):
    for k, label in ((64, "64"), (n // 10, "n/10"), (n // 2, "n/2")):
        rows.append(topk_row(1, n, k, label))

print(f"tokenroute level: {isa}; peers single-threaded; (Nx) = peer time / tokenroute time\n")
print("exact top-k, f32; tokenroute: position-ordered output, ties to the lower index; peers: unsorted\n")
print(table(rows, ["shape", "tokenroute", "torch.topk", "numpy.argpartition", "onnxruntime TopK"]))

trows = []
n = 1 << 20
s = np.random.default_rng(7).uniform(-1, 1, n).astype(np.float32)
out = np.empty(n, np.uint32)
count = np.zeros(1, np.uintp)
ts = torch.from_numpy(s)
for tau, pct in ((0.8, 10), (0.0, 50)):
    args = (ptr(s), 1, n, n, ctypes.c_float(tau), None, ptr(out), n, ptr(count))
    assert lib.tkr_threshold_f32(*args) == 0
    want = np.flatnonzero(s > np.float32(tau))
    assert count[0] == len(want) and np.array_equal(out[:count[0]], want)
    t_tkr = median_time(lambda: lib.tkr_threshold_f32(*args), budget=budget)
    t_np = median_time(lambda: np.flatnonzero(s > np.float32(tau)), budget=budget)
    t_torch = median_time(lambda: torch.nonzero(ts > tau), budget=budget)
    gbs = 4 * n / t_tkr / 1e9
    trows.append([f"n=1M, {pct}% selected", f"{fmt(t_tkr)} ({gbs:.1f} GB/s)", f"{fmt(t_np)} ({t_np / t_tkr:.1f}x)",
                  f"{fmt(t_torch)} ({t_torch / t_tkr:.1f}x)"])
print("\nthreshold selection s > tau, f32, ascending indices\n")
print(table(trows, ["shape", "tokenroute", "np.flatnonzero(s > tau)", "torch.nonzero(s > tau)"]))
