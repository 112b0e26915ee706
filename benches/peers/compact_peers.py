"""Token compaction against the peers, in one process (peers single-threaded unless
`threads` > 1; then tokenroute splits the index list across that many Python threads).

- gather rows dst = src[idx] of a sorted random 50% of [4096, 4096] and [4096, 768]
  rows, f32 and bf16: tokenroute.gather_rows(out=) vs torch.index_select(out=), ONNX Runtime Gather
  (output bound to a preallocated buffer; bf16 rows moved as float16, the same bytes),
  numpy np.take(out=) and src[idx];
- scatter rows full[idx] = y: tokenroute.scatter_rows vs torch.index_copy_, numpy full[idx] = y
  (ONNX Runtime's ScatterND returns a new tensor, not comparable);
- gated residual scatter-add h[idx] += g[:, None] * y: tokenroute.scatter_add_rows vs torch
  index_add_ of an already multiplied delta, the gated forms users write
  (index_add_(0, idx, g[:, None] * Y), h[idx] += g[:, None] * Y) and numpy np.add.at;
- small rows (int32 / int64 position ids, a uint8 mask, 16 x f32 rows): gather;
- the fused route call (score -> select -> gather, top-k of half the tokens, or a
  threshold at the median score): tokenroute.route vs the three tokenroute calls it replaces
  and torch (sigmoid(h @ w), topk / s > tau, index_select).

Every case also times np.copyto of the same bytes between the same buffers (the copy
ceiling, in the note); `__main__` adds a 1 GiB copy. All the implementations of a case
are timed interleaved, round after round (medians), so that a busy machine slows them
alike and the ratios hold; each timed call follows an untimed call of the same
implementation (steady state, as in a hot loop). GB/s = bytes moved once (rows x row
bytes). tokenroute's time is the public wrapper's (what users run); the raw C call (the
declared ctypes function, arguments converted once) is timed beside it.
`run(threads, quick)` returns Result rows (benches/peers/run.py drives every family).
Usage: taskset -c 1 python benches/peers/compact_peers.py [threads] [--quick]
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import ctypes
import sys

import ml_dtypes
import numpy as np
import torch
from onnx import TensorProto, helper

from common import Result, addr, chunks, interleaved, load_package, median_time, ort_session, run_parallel, set_threads, table

tr = load_package()
lib = tr.lib()
ACT_SIGMOID, ROUTE_TOPK, ROUTE_THRESHOLD = 1, 1, 2
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPE_CODE = {np.dtype(np.float32): 1, np.dtype(np.float16): 2, BF16: 3}


def sorted_half(n, seed):
    return np.sort(np.random.default_rng(seed).permutation(n)[: n // 2]).astype(np.uint32)


def as_torch(a):
    """A torch view of a numpy array (bf16 through an int16 view)."""
    if a.dtype == BF16:
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def onnx_type(dt):
    return {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
            np.dtype(np.int32): TensorProto.INT32, np.dtype(np.int64): TensorProto.INT64,
            np.dtype(np.uint8): TensorProto.UINT8}[np.dtype(dt)]


def ort_gather(src, idx64, dst, threads):
    """An ONNX Runtime Gather(axis=0) session with its output bound to `dst`. 16-bit
    rows go through as float16 (Gather only moves bytes)."""
    odt = np.float16 if src.dtype.itemsize == 2 and src.dtype.kind != "i" else src.dtype
    rows, cols = src.shape
    k = len(idx64)
    g = helper.make_graph([helper.make_node("Gather", ["x", "i"], ["y"], axis=0)], "g",
                          [helper.make_tensor_value_info("x", onnx_type(odt), [rows, cols]),
                           helper.make_tensor_value_info("i", TensorProto.INT64, [k])],
                          [helper.make_tensor_value_info("y", onnx_type(odt), [k, cols])])
    sess = ort_session(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), threads)
    io = sess.io_binding()
    io.bind_cpu_input("x", src.view(odt))
    io.bind_cpu_input("i", idx64)
    io.bind_output("y", "cpu", 0, odt, [k, cols], addr(dst))
    return lambda: sess.run_with_iobinding(io)


def split(k, threads):
    return chunks(k, threads)


def gather_scatter(rows, cols, dt, label, threads):
    out = []
    rng = np.random.default_rng(1)
    src = rng.standard_normal((rows, cols), dtype=np.float32).astype(dt)
    idx = sorted_half(rows, 42)
    k, es = len(idx), np.dtype(dt).itemsize
    nbytes = k * cols * es
    dst = np.empty((k, cols), dtype=dt)
    parts = split(k, threads)
    ps, pi, pd = addr(src), addr(idx), addr(dst)
    raw_calls = [lambda a=a, b=b: lib.tkr_gather_rows(es, cols, ps, rows, cols, pi + 4 * a, b - a,
                                                      pd + a * cols * es, cols)
                 for a, b in parts]
    wrapper_calls = [lambda a=a, b=b: tr.gather_rows(src, idx[a:b], out=dst[a:b]) for a, b in parts]
    run_parallel(wrapper_calls)
    assert np.array_equal(dst.view(np.uint8), src[idx.astype(np.int64)].view(np.uint8)), "gather differs"
    idx64 = idx.astype(np.int64)
    tsrc, tdst, tidx = as_torch(src), as_torch(dst), torch.from_numpy(idx64)
    t = interleaved({
        "ours": lambda: run_parallel(wrapper_calls),
        "raw": lambda: run_parallel(raw_calls),
        "copy": lambda: np.copyto(dst, src[:k]),
        "torch": lambda: torch.index_select(tsrc, 0, tidx, out=tdst),
        "onnxruntime": ort_gather(src, idx64, dst, threads),
        "numpy take(out=)": lambda: np.take(src, idx64, axis=0, out=dst),
        "numpy src[idx]": lambda: src[idx64],
    }, repeat=2)
    t_ours, t_raw, t_copy = t.pop("ours"), t.pop("raw"), t.pop("copy")
    peers = t
    note = f"np.copyto of the same bytes: {nbytes / t_copy / 1e9:.2f} GB/s (ours {t_copy / t_ours:.0%})"
    out.append(Result("compact", f"gather {label}", f"{k} of {rows}x{cols}", threads, t_ours, peers, nbytes, note,
                      raw=t_raw))

    full = src.copy()
    pf = addr(full)
    tfull = as_torch(full)
    raw_calls = [lambda a=a, b=b: lib.tkr_scatter_rows(es, cols, pd + a * cols * es, cols, pi + 4 * a, b - a, pf,
                                                       rows, cols)
                 for a, b in parts]
    wrapper_calls = [lambda a=a, b=b: tr.scatter_rows(dst[a:b], idx[a:b], full) for a, b in parts]
    t = interleaved({
        "ours": lambda: run_parallel(wrapper_calls),
        "raw": lambda: run_parallel(raw_calls),
        "copy": lambda: np.copyto(full[:k], dst),
        "torch index_copy_": lambda: tfull.index_copy_(0, tidx, tdst),
        "numpy full[idx] = y": lambda: full.__setitem__(idx64, dst),
    }, repeat=2)
    t_ours, t_raw, t_copy = t.pop("ours"), t.pop("raw"), t.pop("copy")
    peers = t
    note = f"np.copyto of the same bytes: {nbytes / t_copy / 1e9:.2f} GB/s (ours {t_copy / t_ours:.0%})"
    out.append(Result("compact", f"scatter {label}", f"{k} of {rows}x{cols}", threads, t_ours, peers, nbytes, note,
                      raw=t_raw))
    return out


def scatter_add(rows, cols, dt, label, threads):
    rng = np.random.default_rng(2)
    h = rng.standard_normal((rows, cols), dtype=np.float32).astype(dt)
    idx = sorted_half(rows, 7)
    k, es = len(idx), np.dtype(dt).itemsize
    y = rng.standard_normal((k, cols), dtype=np.float32).astype(dt)
    g = rng.random(k, dtype=np.float32)
    nbytes = k * cols * es
    code = DTYPE_CODE[np.dtype(dt)]
    ph, pi, py, pg = addr(h), addr(idx), addr(y), addr(g)
    parts = split(k, threads)
    th, ty = as_torch(h), as_torch(y)
    tg = torch.from_numpy(g).to(th.dtype)
    tidx = torch.from_numpy(idx.astype(np.int64))
    yg = ty * tg[:, None]
    raw_calls = [lambda a=a, b=b: lib.tkr_scatter_add_rows(code, cols, ph, rows, cols, pi + 4 * a, b - a,
                                                           py + a * cols * es, cols, pg + 4 * a)
                 for a, b in parts]
    wrapper_calls = [lambda a=a, b=b: tr.scatter_add_rows(h, idx[a:b], y[a:b], g[a:b]) for a, b in parts]
    t = interleaved({
        "ours": lambda: run_parallel(wrapper_calls),
        "raw": lambda: run_parallel(raw_calls),
        "ours, gate NULL": lambda: tr.scatter_add_rows(h, idx, y),
        "torch index_add_(premultiplied)": lambda: th.index_add_(0, tidx, yg),
        "torch index_add_(0,idx,g[:,None]*Y)": lambda: th.index_add_(0, tidx, tg[:, None] * ty),
        "torch h[idx] += g[:,None]*Y": lambda: th.__setitem__(tidx, th[tidx] + tg[:, None] * ty),
    }, rounds=9, repeat=2)
    t_ours, t_raw, t_plain = t.pop("ours"), t.pop("raw"), t.pop("ours, gate NULL")
    peers = t
    peers["numpy np.add.at"] = (median_time(lambda: np.add.at(h, idx.astype(np.int64), g[:, None] * y), min_reps=3,
                                            budget=0.5) if np.dtype(dt) == np.dtype(np.float32) else None)
    note = f"ours with gate NULL: {t_plain * 1e3:.3f} ms"
    return [Result("compact", f"scatter_add gated {label}", f"{k} of {rows}x{cols}", threads, t_ours, peers,
                   nbytes, note, raw=t_raw)]


def small_rows(cols, dt, label, threads):
    rows = 4096
    src = np.random.default_rng(3).integers(0, 100, (rows, cols)).astype(dt)
    idx = sorted_half(rows, 9)
    k, es = len(idx), np.dtype(dt).itemsize
    nbytes = k * cols * es
    dst = np.empty((k, cols), dtype=dt)
    ps, pi, pd = addr(src), addr(idx), addr(dst)
    lib.tkr_gather_rows(es, cols, ps, rows, cols, pi, k, pd, cols)
    assert np.array_equal(dst, src[idx.astype(np.int64)])
    idx64 = idx.astype(np.int64)
    tsrc, tdst, tidx = torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(idx64)
    src1 = src[:, 0] if cols == 1 else src
    dst1 = dst[:, 0] if cols == 1 else dst
    t = interleaved({
        "ours": lambda: tr.gather_rows(src1, idx, out=dst1),
        "raw": lambda: lib.tkr_gather_rows(es, cols, ps, rows, cols, pi, k, pd, cols),
        "torch": lambda: torch.index_select(tsrc, 0, tidx, out=tdst),
        "onnxruntime": ort_gather(src, idx64, dst, threads),
        "numpy take(out=)": lambda: np.take(src, idx64, axis=0, out=dst),
        "numpy src[idx]": lambda: src[idx64],
    }, rounds=401, budget=1.0, repeat=2)
    t_ours, t_raw = t.pop("ours"), t.pop("raw")
    peers = t
    return [Result("compact", f"gather {label}", f"{k} of {rows}x{cols}", threads, t_ours, peers, nbytes,
                   "tokenroute.gather_rows(src, idx, out=dst), a call of a few microseconds", raw=t_raw)]


def route_cases(n, d, dt, label):
    """tkr_route against the three calls it replaces and torch, one sequence, 1 thread."""
    rng = np.random.default_rng(4)
    h = rng.standard_normal((n, d), dtype=np.float32).astype(dt)
    w = (rng.standard_normal(d, dtype=np.float32) * 0.05).astype(dt)
    es, code = np.dtype(dt).itemsize, DTYPE_CODE[np.dtype(dt)]
    k = n // 2
    s = np.empty(n, np.float32)
    idx = np.empty(n, np.uint32)
    sel = np.empty(n, np.float32)
    rows = np.empty((n, d), dt)
    cnt = ctypes.c_size_t()
    ws = np.zeros(3 * n // 2 + 1, np.uint64)
    ph, pw, ps, pi, psel, pr, pws = (addr(x) for x in (h, w, s, idx, sel, rows, ws))
    lib.tkr_score(code, ph, n, d, d, pw, 1, d, None, ACT_SIGMOID, ps, 1)
    tau = float(np.sort(s)[n // 2])
    th, tw = as_torch(h), as_torch(w)
    trows = as_torch(rows)
    out = []
    for mode, name in ((ROUTE_TOPK, "top-k n/2"), (ROUTE_THRESHOLD, "threshold at the median")):
        kk = k if mode == ROUTE_TOPK else 0

        def raw():
            lib.tkr_route(code, ph, n, d, d, pw, None, ACT_SIGMOID, mode, kk, tau, None, pi, psel, pr, d, n, cnt,
                          pws, ws.nbytes)

        def fused():
            return tr.route(h, w, k=k) if mode == ROUTE_TOPK else tr.route(h, w, tau=tau)

        def three():
            sc = tr.score(h, w)
            i = tr.topk(sc, k) if mode == ROUTE_TOPK else tr.threshold(sc, tau)
            return i, sc[i], tr.gather_rows(h, i)

        def torch_route():
            sc = torch.sigmoid((th @ tw).float())
            if mode == ROUTE_TOPK:
                ti = torch.topk(sc, k).indices.sort().values
            else:
                ti = torch.nonzero(sc > tau).flatten()
            torch.index_select(th, 0, ti, out=trows[: len(ti)])

        raw()
        r = fused()
        assert np.array_equal(idx[: cnt.value], r.indices) and np.array_equal(
            rows[: cnt.value].view(np.uint8), r.rows.view(np.uint8))
        i3, s3, rows3 = three()
        assert np.array_equal(r.indices, i3) and np.array_equal(r.scores, s3) and np.array_equal(
            r.rows.view(np.uint8), rows3.view(np.uint8))
        t = interleaved({"ours": fused, "raw": raw, "tokenroute: the three calls": three, "torch": torch_route},
                        rounds=21, repeat=2)
        t_ours, t_raw = t.pop("ours"), t.pop("raw")
        out.append(Result("compact", f"route {name} {label}", f"{n}x{d}", 1, t_ours, t, n * d * es,
                          "GB/s counts the hidden states once; tokenroute: the three calls = "
                          "score, topk / threshold, gather_rows through the wrappers", raw=t_raw))
    return out


def run(threads=1, quick=False):
    """Result rows of every case; quick: the [4096, 768] shapes only."""
    set_threads(threads)
    rows = []
    shapes = ((4096, 768),) if quick else ((4096, 4096), (4096, 768))
    for r, c in shapes:
        for dt, label in ((np.float32, "f32"), (BF16, "bf16")):
            rows += gather_scatter(r, c, dt, label, threads)
    for r, c in shapes:
        for dt, label in ((np.float32, "f32"), (BF16, "bf16")):
            rows += scatter_add(r, c, dt, label, threads)
    for cols, dt, label in ((1, np.int32, "int32 position ids"), (1, np.int64, "int64 position ids"),
                            (1, np.uint8, "uint8 mask"), (16, np.float32, "16 x f32 rows")):
        rows += small_rows(cols, dt, label, threads)
    if threads == 1:
        route_shapes = ((4096, 768, BF16, "bf16"),) if quick else (
            (4096, 4096, np.float32, "f32"), (4096, 4096, BF16, "bf16"), (4096, 768, BF16, "bf16"))
        for n, d, dt, label in route_shapes:
            rows += route_cases(n, d, dt, label)
    return rows


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    a = np.ones(1 << 28, dtype=np.float32)
    b = np.zeros_like(a)
    t_big = median_time(lambda: np.copyto(b, a), budget=2.0)
    del a, b
    print(f"tokenroute level: {tr.get_isa()}; threads: {threads}; torch "
          f"{torch.__version__}; 1 GiB np.copyto: {(1 << 30) / t_big / 1e9:.2f} GB/s; "
          f"GB/s = bytes moved once / time\n")
    for r in run(threads, quick="--quick" in sys.argv):
        gbs = lambda t: f"{r.nbytes / t / 1e9:.2f}" if t else "-"  # noqa: E731
        best, name = r.best_peer()
        print(f"### {r.workload}, {r.size}\n")
        cells = [[name_, f"{t * 1e3:.3f} ms" if t else "-", gbs(t), f"{t / r.ours:.2f}x" if t else "-"]
                 for name_, t in r.peers.items()]
        print(table([["tokenroute", f"{r.ours * 1e3:.3f} ms", gbs(r.ours), "1.00x"],
                     ["raw C call", f"{r.raw * 1e3:.3f} ms", gbs(r.raw), f"{r.raw / r.ours:.2f}x"], *cells],
                    ["implementation", "median", "GB/s", "time / tokenroute"]))
        print(f"\nbest peer: {name} ({best / r.ours:.2f}x tokenroute's time); {r.note}\n")


if __name__ == "__main__":
    main()
