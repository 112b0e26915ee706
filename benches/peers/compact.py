#!/usr/bin/env python3
"""Token compaction against the peers users would pick instead, single-threaded, in one
process: numpy, PyTorch, ONNX Runtime, and tokenroute through ctypes.

Shapes (the issue's): gather / scatter of a sorted random 50% of [4096, 4096] and
[4096, 768] rows in f32 and bf16; the gated residual scatter-add h[idx] += g * y; small
rows (position ids, masks, 16-element rows); ceilings: a copy of the same bytes
(np.copyto) and a 1 GiB copy.

Usage (from the repository root, after `cargo build --release`):
    taskset -c 1 /work/peers-venv/bin/python benches/peers/compact.py [--quick]
Bandwidth counts the bytes moved once (rows x row bytes), as a memcpy counts them.
"""
import ctypes
import os
import sys
import time

for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

torch.set_num_threads(1)
QUICK = "--quick" in sys.argv
REPS = 7 if QUICK else 25

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
lib = ctypes.CDLL(os.path.join(ROOT, "target", "release", "libtokenroute.so"))
SZ, U32, P = ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p
lib.tkr_gather_rows.argtypes = [SZ, SZ, P, SZ, SZ, P, SZ, P, SZ]
lib.tkr_scatter_rows.argtypes = [SZ, SZ, P, SZ, P, SZ, P, SZ, SZ]
lib.tkr_scatter_add_rows.argtypes = [U32, SZ, P, SZ, SZ, P, SZ, P, SZ, P]
lib.tkr_compact_rows.argtypes = [SZ, SZ, P, SZ, SZ, P, SZ, P]
for f in ("tkr_gather_rows", "tkr_scatter_rows", "tkr_scatter_add_rows", "tkr_compact_rows"):
    getattr(lib, f).restype = U32
lib.tkr_get_isa.restype = U32
lib.tkr_isa_name.restype = ctypes.c_char_p
lib.tkr_isa_name.argtypes = [U32]
DTYPE = {np.dtype(np.float32): 1, np.dtype(np.float16): 2, np.dtype(ml_dtypes.bfloat16): 3}


def ptr(a):
    """The data pointer as a plain int (numpy's `.ctypes` is slow: read it outside the
    timed calls)."""
    return a.__array_interface__["data"][0] if a is not None else None


def timed(fn):
    fn()
    ts = []
    for _ in range(REPS):
        t = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t)
    ts.sort()
    return ts[len(ts) // 2] * 1e-9


def ort_session(op, inputs, outputs, nodes_attrs=None):
    graph = helper.make_graph([helper.make_node(op, [i.name for i in inputs], [o.name for o in outputs],
                                                **(nodes_attrs or {}))], "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


ROWS = []


def report(op, case, name, seconds, nbytes, ours=None):
    ROWS.append((op, case, name, seconds, nbytes, ours))


def sorted_half(n, seed=42):
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[: n // 2]).astype(np.uint32)


def onnx_type(dt):
    return {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
            np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
            np.dtype(np.uint8): TensorProto.UINT8}[np.dtype(dt)]


def gather_scatter(rows, cols, dt, label):
    rng = np.random.default_rng(1)
    src = rng.standard_normal((rows, cols), dtype=np.float32).astype(dt)
    idx = sorted_half(rows)
    k = len(idx)
    es = np.dtype(dt).itemsize
    nbytes = k * cols * es
    dst = np.empty((k, cols), dtype=dt)
    case = f"[{rows},{cols}] {label}"

    # Ceiling: a copy of the same bytes between the same buffers.
    report("gather", case, "ceiling np.copyto (same bytes)", timed(lambda: np.copyto(dst, src[:k])), nbytes)
    ps, pi, pd = ptr(src), ptr(idx), ptr(dst)
    t_ours = timed(lambda: lib.tkr_gather_rows(es, cols, ps, rows, cols, pi, k, pd, cols))
    report("gather", case, "tokenroute tkr_gather_rows", t_ours, nbytes, t_ours)
    want = src[idx.astype(np.int64)]
    assert np.array_equal(dst.view(np.uint8), want.view(np.uint8)), "tokenroute gather differs"

    idx64 = idx.astype(np.int64)
    report("gather", case, "numpy np.take(out=)", timed(lambda: np.take(src, idx64, axis=0, out=dst)), nbytes, t_ours)
    report("gather", case, "numpy src[idx]", timed(lambda: src[idx64]), nbytes, t_ours)
    # torch: bf16 natively; numpy's ml_dtypes bf16 is viewed as int16 for the transfer.
    if np.dtype(dt) == np.dtype(ml_dtypes.bfloat16):
        tsrc = torch.from_numpy(src.view(np.int16)).view(torch.bfloat16)
        tdst = torch.from_numpy(dst.view(np.int16)).view(torch.bfloat16)
    else:
        tsrc, tdst = torch.from_numpy(src), torch.from_numpy(dst)
    tidx = torch.from_numpy(idx64)
    report("gather", case, "torch.index_select(out=)",
           timed(lambda: torch.index_select(tsrc, 0, tidx, out=tdst)), nbytes, t_ours)
    # ONNX Runtime Gather with a preallocated output (IO binding). bf16 as float16: Gather
    # only moves bytes, and the Python binding has no bf16 numpy type.
    odt = np.float16 if es == 2 else dt
    osrc = src.view(odt)
    sess = ort_session("Gather", [helper.make_tensor_value_info("x", onnx_type(odt), [rows, cols]),
                                  helper.make_tensor_value_info("i", TensorProto.INT64, [k])],
                       [helper.make_tensor_value_info("y", onnx_type(odt), [k, cols])], {"axis": 0})
    out = ort.OrtValue.ortvalue_from_numpy(dst.view(odt))
    xv = ort.OrtValue.ortvalue_from_numpy(osrc)
    iv = ort.OrtValue.ortvalue_from_numpy(idx64)
    bind = sess.io_binding()
    bind.bind_ortvalue_input("x", xv)
    bind.bind_ortvalue_input("i", iv)
    bind.bind_ortvalue_output("y", out)
    report("gather", case, "onnxruntime Gather (bound output)", timed(lambda: sess.run_with_iobinding(bind)),
           nbytes, t_ours)

    # Scatter back: dst rows into a full matrix.
    full = src.copy()
    pf = ptr(full)
    t_ours = timed(lambda: lib.tkr_scatter_rows(es, cols, pd, cols, pi, k, pf, rows, cols))
    report("scatter", case, "ceiling np.copyto (same bytes)", timed(lambda: np.copyto(full[:k], dst)), nbytes)
    report("scatter", case, "tokenroute tkr_scatter_rows", t_ours, nbytes, t_ours)
    report("scatter", case, "numpy full[idx] = y", timed(lambda: full.__setitem__(idx64, dst)), nbytes, t_ours)
    if np.dtype(dt) == np.dtype(ml_dtypes.bfloat16):
        tfull = torch.from_numpy(full.view(np.int16)).view(torch.bfloat16)
    else:
        tfull = torch.from_numpy(full)
    report("scatter", case, "torch.index_copy_", timed(lambda: tfull.index_copy_(0, tidx, tdst)), nbytes, t_ours)
    report("scatter", case, "torch full[idx] = y", timed(lambda: tfull.__setitem__(tidx, tdst)), nbytes, t_ours)


def scatter_add(rows, cols, dt, label):
    rng = np.random.default_rng(2)
    h = rng.standard_normal((rows, cols), dtype=np.float32).astype(dt)
    idx = sorted_half(rows, 7)
    k = len(idx)
    y = rng.standard_normal((k, cols), dtype=np.float32).astype(dt)
    g = rng.random(k, dtype=np.float32)
    es = np.dtype(dt).itemsize
    nbytes = k * cols * es  # one row's worth per selected row, as for gather
    case = f"[{rows},{cols}] {label}"
    code = DTYPE[np.dtype(dt)]
    ph, pi, py, pg = ptr(h), ptr(idx), ptr(y), ptr(g)
    t_ours = timed(lambda: lib.tkr_scatter_add_rows(code, cols, ph, rows, cols, pi, k, py, cols, pg))
    report("scatter_add (gated)", case, "tokenroute tkr_scatter_add_rows", t_ours, nbytes, t_ours)
    t_plain = timed(lambda: lib.tkr_scatter_add_rows(code, cols, ph, rows, cols, pi, k, py, cols, None))
    report("scatter_add (gated)", case, "tokenroute, gate NULL", t_plain, nbytes, t_ours)
    if np.dtype(dt) == np.dtype(ml_dtypes.bfloat16):
        th = torch.from_numpy(h.view(np.int16)).view(torch.bfloat16)
        ty = torch.from_numpy(y.view(np.int16)).view(torch.bfloat16)
    else:
        th, ty = torch.from_numpy(h), torch.from_numpy(y)
    tg = torch.from_numpy(g).to(th.dtype)
    tidx = torch.from_numpy(idx.astype(np.int64))
    yg = ty * tg[:, None]
    report("scatter_add (gated)", case, "torch index_add_(premultiplied)",
           timed(lambda: th.index_add_(0, tidx, yg)), nbytes, t_ours)
    report("scatter_add (gated)", case, "torch index_add_(0,idx,g[:,None]*Y)",
           timed(lambda: th.index_add_(0, tidx, tg[:, None] * ty)), nbytes, t_ours)
    report("scatter_add (gated)", case, "torch h[idx] += g[:,None]*Y",
           timed(lambda: th.__setitem__(tidx, th[tidx] + tg[:, None] * ty)), nbytes, t_ours)
    if np.dtype(dt) == np.dtype(np.float32) and not QUICK:
        idx64 = idx.astype(np.int64)
        report("scatter_add (gated)", case, "numpy np.add.at(h, idx, g[:,None]*Y)",
               timed(lambda: np.add.at(h, idx64, g[:, None] * y)), nbytes, t_ours)


def small_rows(rows, cols, dt, label):
    rng = np.random.default_rng(3)
    src = (rng.integers(0, 100, (rows, cols))).astype(dt)
    idx = sorted_half(rows, 9)
    k = len(idx)
    es = np.dtype(dt).itemsize
    nbytes = k * cols * es
    dst = np.empty((k, cols), dtype=dt)
    case = f"[{rows},{cols}] {label}"
    ps, pi, pd = ptr(src), ptr(idx), ptr(dst)
    t_ours = timed(lambda: lib.tkr_gather_rows(es, cols, ps, rows, cols, pi, k, pd, cols))
    report("small rows gather", case, "tokenroute tkr_gather_rows", t_ours, nbytes, t_ours)
    idx64 = idx.astype(np.int64)
    report("small rows gather", case, "numpy np.take(out=)", timed(lambda: np.take(src, idx64, axis=0, out=dst)),
           nbytes, t_ours)
    tsrc, tdst, tidx = torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(idx64)
    report("small rows gather", case, "torch.index_select(out=)",
           timed(lambda: torch.index_select(tsrc, 0, tidx, out=tdst)), nbytes, t_ours)
    work = src.copy()
    pw = ptr(work)
    t_c = timed(lambda: lib.tkr_compact_rows(es, cols, pw, rows, cols, pi, k, None))
    report("small rows gather", case, "tokenroute tkr_compact_rows (in place)", t_c, nbytes, t_ours)


def copy_1gib():
    a = np.ones(1 << 28, dtype=np.float32)
    b = np.zeros_like(a)
    report("copy", "1 GiB", "np.copyto", timed(lambda: np.copyto(b, a)), a.nbytes)
    del a, b


def main():
    print(f"tokenroute level: {lib.tkr_isa_name(lib.tkr_get_isa()).decode()}; torch {torch.__version__} "
          f"threads={torch.get_num_threads()}; onnxruntime {ort.__version__}; numpy {np.__version__}")
    copy_1gib()
    for rows, cols in [(4096, 4096), (4096, 768)]:
        for dt, label in [(np.float32, "f32"), (ml_dtypes.bfloat16, "bf16")]:
            gather_scatter(rows, cols, dt, label)
    for rows, cols in [(4096, 4096), (4096, 768)]:
        for dt, label in [(np.float32, "f32"), (ml_dtypes.bfloat16, "bf16")]:
            scatter_add(rows, cols, dt, label)
    for cols, dt, label in [(1, np.int32, "int32 position ids"), (1, np.int64, "int64 position ids"),
                            (1, np.uint8, "uint8 mask"), (16, np.float32, "16 x f32")]:
        small_rows(4096, cols, dt, label)
    print(f"\n{'op':20} {'case':26} {'implementation':40} {'median':>10} {'GB/s':>7} {'ours x':>7}")
    for op, case, name, t, nb, ours in ROWS:
        ratio = f"{t / ours:7.2f}" if ours and not name.startswith("tokenroute tkr") else "      -"
        print(f"{op:20} {case:26} {name:40} {t * 1e3:8.3f}ms {nb / t / 1e9:7.2f} {ratio}")
    print("\n'ours x' = the implementation's time / tokenroute's time (> 1: tokenroute is faster).")


if __name__ == "__main__":
    main()
