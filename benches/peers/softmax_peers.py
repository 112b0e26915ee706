"""Row softmax against the peers, in one process.

Rows of 4096 logits (64 and 1024 rows), f32 and bf16 in: tokenroute.softmax(x, out=y) (the
public wrapper; the raw C call beside it) vs torch.softmax(x, -1) (which allocates its
result: torch has no out= for softmax), ONNX Runtime Softmax (axis -1, I/O bound to
preallocated buffers; f32 only) and numpy (exp(x - max) / sum, in float32; bf16 rows are
given to numpy as float32). All implementations of a case are timed interleaved.
`run(threads, quick)` returns Result rows; with threads > 1 the peers use that many
threads and tokenroute runs on the library's pool with as many.
Usage: python benches/peers/softmax_peers.py [threads] [--quick]
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import ctypes
import sys

import ml_dtypes
import numpy as np
import torch
from onnx import TensorProto, helper

from common import Result, addr, interleaved, load_package, ort_session, set_threads, table

tr = load_package()
lib = tr.lib()


def _numpy_softmax(x, y):
    np.subtract(x, x.max(axis=-1, keepdims=True), out=y)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)


def cases(threads, quick=False):
    rows_out = []
    for rows in (64,) if quick else (64, 1024):
        n = 4096
        base = (np.random.default_rng(rows).standard_normal((rows, n)) * 4).astype(np.float32)
        for dt in ("f32", "bf16"):
            x = base if dt == "f32" else base.astype(ml_dtypes.bfloat16)
            y = np.empty_like(x)
            code = 1 if dt == "f32" else 3
            px, py = addr(x), addr(y)
            raw = lambda: lib.tkr_softmax(code, px, rows, n, n, None, py, n)  # noqa: E731
            tr.softmax(x, out=y)
            ours = y.astype(np.float32)
            tx = torch.from_numpy(base) if dt == "f32" else torch.from_numpy(base).to(torch.bfloat16)
            xf = x.astype(np.float32)
            yf = np.empty_like(xf)
            fns = {
                "ours": lambda: tr.softmax(x, out=y),
                "raw": raw,
                "torch": lambda: torch.softmax(tx, -1),
                "onnxruntime": None,
                "numpy": lambda: _numpy_softmax(xf, yf),
            }
            if dt == "f32":
                g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], "g",
                                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])])
                sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)
                io = sess.io_binding()
                io.bind_cpu_input("x", x)
                io.bind_output("y", "cpu", 0, np.float32, [rows, n], py)
                fns["onnxruntime"] = lambda: sess.run_with_iobinding(io)
            t = interleaved(fns, rounds=15, budget=2.0, repeat=2)
            want = torch.softmax(tx.float(), -1).numpy()
            assert np.allclose(ours, want, rtol=1e-2 if dt == "bf16" else 1e-5, atol=1e-7)
            rows_out.append(Result("softmax", f"softmax {dt}", f"{rows}x{n}", threads, t.pop("ours"), t,
                                   x.nbytes + y.nbytes, raw=t.pop("raw")))
    return rows_out


def run(threads=1, quick=False):
    """Result rows; quick: the small shape only."""
    set_threads(threads)
    return cases(threads, quick)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    print(f"tokenroute level: {tr.get_isa()}; threads: {threads}; GB/s = bytes read and written / time\n")
    out = []
    results = run(threads, quick="--quick" in sys.argv)
    for r in results:
        gbs = lambda t: f"{r.nbytes / t / 1e9:.2f}" if t else "-"  # noqa: E731
        best, name = r.best_peer()
        cells = [f"{t * 1e3:.3f} ms ({gbs(t)})" if t else "-" for t in r.peers.values()]
        out.append([f"{r.workload} {r.size}", f"{r.ours * 1e3:.3f} ms ({gbs(r.ours)} GB/s)",
                    f"{r.raw * 1e3:.3f} ms", *cells, f"{best / r.ours:.2f}x ({name})"])
    print(table(out, ["workload", "tokenroute", "raw C call", *results[0].peers.keys(), "vs best peer"]))
