"""Router scoring against the peers, in one process.

- elementwise sigmoid over 1M and 16M f32: tkr_sigmoid_f32 vs torch.sigmoid(x, out=y),
  ONNX Runtime Sigmoid (I/O bound to preallocated buffers), numpy 1/(1+exp(-x));
- fused router scores S = sigmoid(H w + b) for H [n, d] f32: tkr_score vs torch
  (sigmoid(addmm)), ONNX Runtime (Gemm + Sigmoid) and numpy.

`run(threads, quick)` returns Result rows; with threads > 1 the peers use that many threads
and tokenroute splits the elements/rows across that many Python threads.
Usage: python benches/peers/score_peers.py [threads] [--quick]
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import ctypes
import sys

import numpy as np
import torch
from onnx import TensorProto, helper

from common import Result, chunks, load_library, median_time, ort_session, ptr, run_parallel, set_threads, table

lib = load_library()
lib.tkr_sigmoid_f32.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
lib.tkr_sigmoid_f32.restype = ctypes.c_uint32
lib.tkr_score.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t,
                          ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_uint32,
                          ctypes.c_void_p, ctypes.c_size_t]
lib.tkr_score.restype = ctypes.c_uint32


def at(a, i):
    return ctypes.c_void_p(a.ctypes.data + i * a.itemsize)


def sigmoid_cases(threads, quick=False):
    rows = []
    for n in (1 << 20,) if quick else (1 << 20, 16 << 20):
        x = (np.random.default_rng(0).standard_normal(n) * 6).astype(np.float32)
        y = np.empty_like(x)
        budget = 1.0 if n < 1 << 22 else 3.0
        parts = chunks(n, threads)
        t_tkr = median_time(lambda: run_parallel([lambda a=a, b=b: lib.tkr_sigmoid_f32(at(x, a), b - a, at(y, a))
                                                  for a, b in parts]), budget=budget)
        ours = y.copy()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        t_torch = median_time(lambda: torch.sigmoid(tx, out=ty), budget=budget)
        assert np.allclose(ours, y, rtol=1e-5, atol=1e-30)
        g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
        sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)
        io = sess.io_binding()
        io.bind_cpu_input("x", x)
        io.bind_output("y", "cpu", 0, np.float32, [n], y.ctypes.data)
        t_ort = median_time(lambda: sess.run_with_iobinding(io), budget=budget)
        t_np = median_time(lambda: np.divide(1.0, 1.0 + np.exp(-x), out=y), budget=budget, min_reps=3)
        rows.append(Result("score", "sigmoid f32", f"{n >> 20}M", threads, t_tkr,
                           {"torch": t_torch, "onnxruntime": t_ort, "numpy": t_np}, 4 * n))
    return rows


def score_cases(threads, quick=False):
    rows = []
    for (n, d) in ((512, 768),) if quick else ((512, 768), (4096, 4096)):
        rng = np.random.default_rng(1)
        h = rng.standard_normal((n, d)).astype(np.float32)
        w = (rng.standard_normal((1, d)) * 0.05).astype(np.float32)
        b = np.array([0.1], np.float32)
        s = np.empty((n, 1), np.float32)
        parts = chunks(n, threads)
        t_tkr = median_time(lambda: run_parallel([
            lambda a=a, c=c: lib.tkr_score(1, at(h, a * d), c - a, d, d, ptr(w), 1, d, ptr(b), 1, at(s, a), 1)
            for a, c in parts]))
        ours = s.copy()
        th, tw, tb = torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(b)
        ts = torch.empty((n, 1))
        t_torch = median_time(lambda: torch.sigmoid(torch.addmm(tb, th, tw.t(), out=ts), out=ts))
        assert np.allclose(ours, ts.numpy(), rtol=1e-4, atol=1e-6)
        g = helper.make_graph([helper.make_node("Gemm", ["h", "w", "b"], ["z"], transB=1),
                               helper.make_node("Sigmoid", ["z"], ["s"])], "g",
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [n, d])],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, [n, 1])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [1, d], w.ravel().tolist()),
                               helper.make_tensor("b", TensorProto.FLOAT, [1], b.tolist())])
        sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)
        io = sess.io_binding()
        io.bind_cpu_input("h", h)
        io.bind_output("s", "cpu", 0, np.float32, [n, 1], s.ctypes.data)
        t_ort = median_time(lambda: sess.run_with_iobinding(io))
        t_np = median_time(lambda: 1.0 / (1.0 + np.exp(-(h @ w.T + b))))
        rows.append(Result("score", "score f32 E=1", f"{n}x{d}", threads, t_tkr,
                           {"torch": t_torch, "onnxruntime": t_ort, "numpy": t_np}, 4 * n * d))
    return rows


def run(threads=1, quick=False):
    """Result rows; quick: the small shapes only."""
    set_threads(threads)
    return sigmoid_cases(threads, quick) + score_cases(threads, quick)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    lib.tkr_get_isa.restype = ctypes.c_uint32
    lib.tkr_isa_name.restype = ctypes.c_char_p
    print(f"tokenroute level: {lib.tkr_isa_name(lib.tkr_get_isa()).decode()}; threads: {threads}; "
          f"GB/s = input bytes / time\n")
    out = []
    results = run(threads, quick="--quick" in sys.argv)
    for r in results:
        gbs = lambda t: f"{r.nbytes / t / 1e9:.2f}" if t else "-"  # noqa: E731
        best, name = r.best_peer()
        cells = [f"{t * 1e3:.3f} ms ({gbs(t)})" if t else "-" for t in r.peers.values()]
        out.append([f"{r.workload} {r.size}", f"{r.ours * 1e3:.3f} ms ({gbs(r.ours)} GB/s)", *cells,
                    f"{best / r.ours:.2f}x ({name})"])
    print(table(out, ["workload", "tokenroute", *results[0].peers.keys(), "vs best peer"]))
