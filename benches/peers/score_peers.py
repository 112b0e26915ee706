"""Router scoring against the peers, in one process.

- elementwise sigmoid over 1M and 16M f32: tokenroute.sigmoid(x, out=y) vs torch.sigmoid(x, out=y),
  ONNX Runtime Sigmoid (I/O bound to preallocated buffers), numpy 1/(1+exp(-x));
- fused router scores S = sigmoid(H w + b) for H [n, d] f32: tokenroute.score(out=) vs torch
  (sigmoid(addmm)), ONNX Runtime (Gemm + Sigmoid) and numpy.

tokenroute's time is the public wrapper's (what users run), the raw C call (the declared
ctypes function, arguments converted once) beside it; all implementations of a case are
timed interleaved. `run(threads, quick)` returns Result rows; with threads > 1 the peers
use that many threads and tokenroute splits the elements/rows across that many Python
threads (one wrapper call each).
Usage: python benches/peers/score_peers.py [threads] [--quick]
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import sys

import numpy as np
import torch
from onnx import TensorProto, helper

from common import Result, addr, chunks, interleaved, load_package, ort_session, run_parallel, set_threads, table

tr = load_package()
lib = tr.lib()


def sigmoid_cases(threads, quick=False):
    rows = []
    for n in (1 << 20,) if quick else (1 << 20, 16 << 20):
        x = (np.random.default_rng(0).standard_normal(n) * 6).astype(np.float32)
        y = np.empty_like(x)
        budget = 1.0 if n < 1 << 22 else 3.0
        parts = chunks(n, threads)
        px, py = addr(x), addr(y)
        raw_calls = [lambda a=a, b=b: lib.tkr_sigmoid_f32(px + 4 * a, b - a, py + 4 * a) for a, b in parts]
        wrapper_calls = [lambda a=a, b=b: tr.sigmoid(x[a:b], out=y[a:b]) for a, b in parts]
        tr.sigmoid(x, out=y)
        ours = y.copy()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
        sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)
        io = sess.io_binding()
        io.bind_cpu_input("x", x)
        io.bind_output("y", "cpu", 0, np.float32, [n], py)
        t = interleaved({
            "ours": lambda: run_parallel(wrapper_calls),
            "raw": lambda: run_parallel(raw_calls),
            "torch": lambda: torch.sigmoid(tx, out=ty),
            "onnxruntime": lambda: sess.run_with_iobinding(io),
            "numpy": lambda: np.divide(1.0, 1.0 + np.exp(-x), out=y),
        }, rounds=15, budget=budget, repeat=2)
        torch.sigmoid(tx, out=ty)
        assert np.allclose(ours, y, rtol=1e-5, atol=1e-30)
        rows.append(Result("score", "sigmoid f32", f"{n >> 20}M", threads, t.pop("ours"), t, 4 * n,
                           raw=t.pop("raw")))
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
        ph, pw, pb, ps = addr(h), addr(w), addr(b), addr(s)
        raw_calls = [lambda a=a, c=c: lib.tkr_score(1, ph + 4 * a * d, c - a, d, d, pw, 1, d, pb, 1, ps + 4 * a, 1)
                     for a, c in parts]
        wrapper_calls = [lambda a=a, c=c: tr.score(h[a:c], w, b, out=s[a:c]) for a, c in parts]
        tr.score(h, w, b, out=s)
        ours = s.copy()
        th, tw, tb = torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(b)
        ts = torch.empty((n, 1))
        g = helper.make_graph([helper.make_node("Gemm", ["h", "w", "b"], ["z"], transB=1),
                               helper.make_node("Sigmoid", ["z"], ["s"])], "g",
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [n, d])],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, [n, 1])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [1, d], w.ravel().tolist()),
                               helper.make_tensor("b", TensorProto.FLOAT, [1], b.tolist())])
        sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)
        io = sess.io_binding()
        io.bind_cpu_input("h", h)
        so = np.empty((n, 1), np.float32)
        io.bind_output("s", "cpu", 0, np.float32, [n, 1], addr(so))
        t = interleaved({
            "ours": lambda: run_parallel(wrapper_calls),
            "raw": lambda: run_parallel(raw_calls),
            "torch": lambda: torch.sigmoid(torch.addmm(tb, th, tw.t(), out=ts), out=ts),
            "onnxruntime": lambda: sess.run_with_iobinding(io),
            "numpy": lambda: 1.0 / (1.0 + np.exp(-(h @ w.T + b))),
        }, rounds=15, budget=2.0, repeat=2)
        assert np.allclose(ours, ts.numpy(), rtol=1e-4, atol=1e-6)
        rows.append(Result("score", "score f32 E=1", f"{n}x{d}", threads, t.pop("ours"), t, 4 * n * d,
                           raw=t.pop("raw")))
    return rows


def run(threads=1, quick=False):
    """Result rows; quick: the small shapes only."""
    set_threads(threads)
    return sigmoid_cases(threads, quick) + score_cases(threads, quick)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    print(f"tokenroute level: {tr.get_isa()}; threads: {threads}; GB/s = input bytes / time\n")
    out = []
    results = run(threads, quick="--quick" in sys.argv)
    for r in results:
        gbs = lambda t: f"{r.nbytes / t / 1e9:.2f}" if t else "-"  # noqa: E731
        best, name = r.best_peer()
        cells = [f"{t * 1e3:.3f} ms ({gbs(t)})" if t else "-" for t in r.peers.values()]
        out.append([f"{r.workload} {r.size}", f"{r.ours * 1e3:.3f} ms ({gbs(r.ours)} GB/s)",
                    f"{r.raw * 1e3:.3f} ms", *cells, f"{best / r.ours:.2f}x ({name})"])
    print(table(out, ["workload", "tokenroute", "raw C call", *results[0].peers.keys(), "vs best peer"]))
