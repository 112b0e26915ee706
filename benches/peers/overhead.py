"""The cost of the Python package on top of the C calls it makes, in one process.

Two tables:

- small inputs (n = 64, one row): every public function of the package, timed as users
  call it (outputs allocated) and with ``out=`` (and a workspace where it takes one),
  beside the raw C call (the function ``tokenroute.lib()`` declares, called with
  arguments converted once, outputs preallocated) and torch's equivalent call on the same
  data. Overhead = wrapper - raw.
- large inputs (64K elements and more): the wrapper against the raw call on the shapes
  of the issue (threshold 1M at 10% and 50%, top-k 1M at k = 64 and n/10, gather 2048 of
  [4096, 4096] rows, decode attention over 2048 of 8192 keys), with and without ``out=``.

Every implementation of a case is timed interleaved, round after round, each sample a
batch of calls after one untimed call of the same implementation (so that it finds the
caches as its own loop leaves them); the tables give medians per call. Times are the calling thread's CPU
time (``time.thread_time``): on a shared machine the time the thread waits for a core is
not part of a call's cost. The wall-clock ratio, median of the same interleaved rounds,
is in the JSON.

`run(threads, quick)` returns the rows (benches/peers/run.py writes them into peers.md);
``python benches/peers/overhead.py [--quick] [--small] [function ...]`` prints both tables
(``--small``: the first only; function names: only those).
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import ctypes
import math
import sys
import time

import numpy as np
import torch

from common import ROOT, table

sys.path.insert(0, str(ROOT / "python"))
import tokenroute as tr  # noqa: E402
from tokenroute import _ffi  # noqa: E402
from tokenroute.attend import AttentionKeys, AttentionOptions  # noqa: E402

lib = tr.lib()
C = _ffi.CONSTANTS
F32, F16, BF16 = _ffi.TKR_DTYPE_F32, _ffi.TKR_DTYPE_F16, _ffi.TKR_DTYPE_BF16


def a(x):
    """The data address of an array (read once, outside the timed calls)."""
    return x.__array_interface__["data"][0]


def sample(fn, reps, clock):
    """Seconds per call of fn over a batch of reps calls, by `clock`."""
    t = clock()
    for _ in range(reps):
        fn()
    return (clock() - t) / reps


def interleaved(fns, reps, rounds, budget):
    """Per implementation: (median CPU seconds per call, median wall seconds per call),
    over rounds of one batch of `reps` calls each, round-robin."""
    for f in fns.values():
        if f is not None:
            f()
    cpu = {k: [] for k, f in fns.items() if f is not None}
    wall = {k: [] for k in cpu}
    start = time.perf_counter()
    r = 0
    while r < rounds and (r < 5 or time.perf_counter() - start < budget):
        for k in cpu:
            f = fns[k]
            f()  # untimed: the timed batch finds the caches as its own loop leaves them
            w0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(reps):
                f()
            c1, w1 = time.thread_time(), time.perf_counter()
            cpu[k].append((c1 - c0) / reps)
            wall[k].append((w1 - w0) / reps)
        r += 1
    med = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    return {k: (med(cpu[k]), med(wall[k])) for k in cpu}


class Case:
    """One function: its raw C call, the wrapper as users call it, the wrapper with its
    outputs given, and torch's equivalent (each a zero-argument callable)."""

    def __init__(self, family, function, shape, raw, wrapper, wrapper_out, torch_fn, torch_name):
        self.family, self.function, self.shape = family, function, shape
        self.raw, self.wrapper, self.wrapper_out = raw, wrapper, wrapper_out
        self.torch, self.torch_name = torch_fn, torch_name


def small_cases():
    rng = np.random.default_rng(0)
    n, d = 64, 64
    cases = []
    ok = lambda st: st == 0 or (_ for _ in ()).throw(RuntimeError(f"status {st}"))  # noqa: E731

    # --- score
    x = rng.standard_normal(n).astype(np.float32)
    y = np.empty_like(x)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    px, py = a(x), a(y)
    cases.append(Case("score", "sigmoid", "[64] f32",
                      lambda: lib.tkr_sigmoid_f32(px, n, py),
                      lambda: tr.sigmoid(x), lambda: tr.sigmoid(x, out=y),
                      lambda: torch.sigmoid(tx), "torch.sigmoid(x)"))
    h = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.standard_normal(d).astype(np.float32)
    s = np.empty(n, np.float32)
    th, tw = torch.from_numpy(h), torch.from_numpy(w)
    ph, pw, ps = a(h), a(w), a(s)
    cases.append(Case("score", "score", "h [64, 64] f32, one router",
                      lambda: lib.tkr_score(F32, ph, n, d, d, pw, 1, d, None, 1, ps, 1),
                      lambda: tr.score(h, w), lambda: tr.score(h, w, out=s),
                      lambda: torch.sigmoid(torch.mv(th, tw)), "torch.sigmoid(torch.mv(h, w))"))

    # --- select
    sc = rng.standard_normal(n).astype(np.float32)
    tsc = torch.from_numpy(sc)
    k = 8
    idx = np.empty(n, np.uint32)
    idx_k = np.empty(k, np.uint32)
    ws = np.empty(tr.topk_workspace_size(n), np.uint8)
    psc, pidx, pws = a(sc), a(idx), a(ws)
    cnt = (ctypes.c_size_t * 1)()
    pcnt = ctypes.addressof(cnt)
    cases.append(Case("select", "topk", "[64] f32, k = 8",
                      lambda: lib.tkr_topk_f32(psc, 1, n, n, k, None, pidx, k, None, None, 0),
                      lambda: tr.topk(sc, k), lambda: tr.topk(sc, k, out=idx_k, workspace=ws),
                      lambda: torch.topk(tsc, k), "torch.topk(s, 8)"))
    cases.append(Case("select", "threshold", "[64] f32, tau = 0.5",
                      lambda: lib.tkr_threshold_f32(psc, 1, n, n, 0.5, None, pidx, n, pcnt),
                      lambda: tr.threshold(sc, 0.5), lambda: tr.threshold(sc, 0.5, out=idx),
                      lambda: torch.nonzero(tsc > 0.5), "torch.nonzero(s > 0.5)"))
    m = sc > 0.5
    tm = torch.from_numpy(m)
    pm = a(m)
    cases.append(Case("select", "mask_to_indices", "[64] bool",
                      lambda: lib.tkr_mask_to_indices(pm, n, pidx, pcnt),
                      lambda: tr.mask_to_indices(m), lambda: tr.mask_to_indices(m, out=idx),
                      lambda: torch.nonzero(tm), "torch.nonzero(m)"))
    sel = np.flatnonzero(m).astype(np.uint32)
    tsel = torch.from_numpy(sel.astype(np.int64))
    mo = np.empty(n, np.bool_)
    psel, pmo = a(sel), a(mo)

    def torch_mask():
        t = torch.zeros(n, dtype=torch.bool)
        t[tsel] = True
        return t

    cases.append(Case("select", "indices_to_mask", f"{len(sel)} of 64",
                      lambda: lib.tkr_indices_to_mask(psel, len(sel), pmo, n),
                      lambda: tr.indices_to_mask(sel, n), lambda: tr.indices_to_mask(sel, n, out=mo),
                      torch_mask, "zeros(64, bool); m[idx] = True"))

    # --- compact
    src = rng.standard_normal((n, d)).astype(np.float32)
    gi = np.sort(rng.permutation(n)[: n // 2]).astype(np.uint32)
    dst = np.empty((n // 2, d), np.float32)
    tsrc, tgi, tdst = torch.from_numpy(src), torch.from_numpy(gi.astype(np.int64)), torch.from_numpy(dst)
    psrc, pgi, pdst = a(src), a(gi), a(dst)
    m2 = len(gi)
    cases.append(Case("compact", "gather_rows", "32 of [64, 64] f32",
                      lambda: lib.tkr_gather_rows(4, d, psrc, n, d, pgi, m2, pdst, d),
                      lambda: tr.gather_rows(src, gi), lambda: tr.gather_rows(src, gi, out=dst),
                      lambda: torch.index_select(tsrc, 0, tgi), "torch.index_select(src, 0, idx)"))
    full = src.copy()
    tfull = torch.from_numpy(full)
    pfull = a(full)
    cases.append(Case("compact", "scatter_rows", "32 into [64, 64] f32",
                      lambda: lib.tkr_scatter_rows(4, d, pdst, d, pgi, m2, pfull, n, d),
                      None, lambda: tr.scatter_rows(dst, gi, full),
                      lambda: tfull.index_copy_(0, tgi, tdst), "full.index_copy_(0, idx, y)"))
    gate = rng.random(m2).astype(np.float32)
    tgate = torch.from_numpy(gate)
    pg = a(gate)
    cases.append(Case("compact", "scatter_add_rows", "32 into [64, 64] f32, gated",
                      lambda: lib.tkr_scatter_add_rows(F32, d, pfull, n, d, pgi, m2, pdst, d, pg),
                      None, lambda: tr.scatter_add_rows(full, gi, dst, gate),
                      lambda: tfull.index_add_(0, tgi, tdst * tgate[:, None]),
                      "h.index_add_(0, idx, y * g[:, None])"))
    data = src.copy()
    tdata = torch.from_numpy(data)
    pdata = a(data)

    def torch_compact():
        tdata[:m2] = tdata[tgi]

    cases.append(Case("compact", "compact_rows", "keep 32 of [64, 64] f32",
                      lambda: lib.tkr_compact_rows(4, d, pdata, n, d, pgi, m2, None),
                      None, lambda: tr.compact_rows(data, gi), torch_compact, "h[:32] = h[keep]"))
    cache = rng.standard_normal((n, 4, 16)).astype(np.float32)
    tcache = torch.from_numpy(cache)
    pcache = a(cache)

    def torch_kv():
        tcache[:m2] = tcache[tgi]

    cases.append(Case("compact", "kv_compact", "keep 32 of [64, 4, 16] f32",
                      lambda: lib.tkr_kv_compact(1, 4, pcache, n, 4, 16, 64, 16, pgi, m2, 0, None),
                      None, lambda: tr.kv_compact(cache, gi), torch_kv, "cache[:32] = cache[keep]"))

    # --- route
    ri = np.empty(k, np.uint32)
    rs = np.empty(k, np.float32)
    rr = np.empty((k, d), np.float32)
    rws = np.empty(tr.route_workspace_size(n), np.uint8)
    pri, prs, prr, prws = a(ri), a(rs), a(rr), a(rws)
    rcount = ctypes.c_size_t()

    def torch_route():
        sc_ = torch.sigmoid(torch.mv(th, tw))
        i_ = torch.topk(sc_, k).indices.sort().values
        return th[i_]

    cases.append(Case("route", "route", "[64, 64] f32, k = 8",
                      lambda: lib.tkr_route(F32, ph, n, d, d, pw, None, 1, 1, k, 0.0, None, pri, prs, prr, d,
                                            k, rcount, prws, rws.nbytes),
                      lambda: tr.route(h, w, k=k), lambda: tr.route(h, w, k=k, out=(ri, rs, rr), workspace=rws),
                      torch_route, "sigmoid(mv), topk, sort, h[idx]"))

    # --- attend (decode: one query, 4 heads, 64 keys, d = 64)
    hh, dd = 4, 64
    q = rng.standard_normal((1, hh, dd)).astype(np.float32)
    kk = rng.standard_normal((n, hh, dd)).astype(np.float32)
    vv = rng.standard_normal((n, hh, dd)).astype(np.float32)
    ao = np.empty((1, hh, dd), np.float32)
    pq, pk, pv, pao = a(q), a(kk), a(vv), a(ao)
    tq = torch.from_numpy(q).permute(1, 0, 2).unsqueeze(0)
    tk = torch.from_numpy(kk).permute(1, 0, 2).unsqueeze(0)
    tv = torch.from_numpy(vv).permute(1, 0, 2).unsqueeze(0)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    cases.append(Case("attend", "attention", "1 q x 64 keys, 4 heads, d = 64 f32",
                      lambda: lib.tkr_attention(F32, pq, 1, hh, dd, hh * dd, dd, pk, pv, n, hh, hh * dd, dd, hh * dd,
                                                dd, None, None, pao, hh * dd, dd),
                      lambda: tr.attention(q, kk, vv), lambda: tr.attention(q, kk, vv, out=ao),
                      lambda: sdpa(tq, tk, tv), "scaled_dot_product_attention"))
    parts = rng.standard_normal((2, hh, dd)).astype(np.float32)
    plse = rng.standard_normal((2, hh)).astype(np.float32)
    mo2 = np.empty((hh, dd), np.float32)
    pparts, pplse, pmo2 = a(parts), a(plse), a(mo2)
    tparts, tplse = torch.from_numpy(parts), torch.from_numpy(plse)

    def torch_merge():
        lse = torch.logsumexp(tplse, 0)
        return (torch.exp(tplse - lse)[:, :, None] * tparts).sum(0), lse

    cases.append(Case("attend", "attention_merge", "2 parts x 4 rows, d = 64",
                      lambda: lib.tkr_attention_merge(F32, pparts, 2, hh, dd, hh * dd, dd, pplse, hh, pmo2, dd, None),
                      lambda: tr.attention_merge(parts, plse), lambda: tr.attention_merge(parts, plse, out=mo2),
                      torch_merge, "logsumexp, exp, weighted sum"))
    bs = 16
    nb = n // bs
    kmin = np.empty((nb, hh, dd), np.float32)
    kmax = np.empty((nb, hh, dd), np.float32)
    pkmin, pkmax = a(kmin), a(kmax)
    tkk = torch.from_numpy(kk)

    def torch_summary():
        blocks = tkk.view(nb, bs, hh, dd)
        return blocks.amin(1), blocks.amax(1)

    cases.append(Case("attend", "key_block_summary", "[64, 4, 64] f32, blocks of 16",
                      lambda: lib.tkr_key_block_summary(F32, pk, n, hh, dd, hh * dd, dd, bs, 0, nb, pkmin, pkmax),
                      lambda: tr.key_block_summary(kk, bs), lambda: tr.key_block_summary(kk, bs, kmin=kmin, kmax=kmax),
                      torch_summary, "view, amin, amax"))
    bound = np.empty((1, hh, nb), np.float32)
    pbound = a(bound)
    tq1, tkmin, tkmax = torch.from_numpy(q), torch.from_numpy(kmin), torch.from_numpy(kmax)

    def torch_bound():
        return torch.maximum(tq1[0][None] * tkmin, tq1[0][None] * tkmax).sum(-1)

    cases.append(Case("attend", "key_block_bound", "1 q x 4 blocks, 4 heads, d = 64",
                      lambda: lib.tkr_key_block_bound(F32, pq, 1, hh, dd, hh * dd, dd, pkmin, pkmax, nb, hh, pbound, nb),
                      lambda: tr.key_block_bound(q, kmin, kmax), lambda: tr.key_block_bound(q, kmin, kmax, out=bound),
                      torch_bound, "maximum(q * kmin, q * kmax).sum(-1)"))
    kq = 2
    qids = np.empty(hh * kq, np.uint32)
    qoffs = np.empty(hh + 1, np.uintp)
    pqids, pqoffs = a(qids), a(qoffs)
    qk = ctypes.c_size_t()

    def torch_quest():
        return torch.topk(torch_bound(), kq).indices.sort().values

    cases.append(Case("attend", "quest_select_blocks", "1 q x 4 blocks, 4 heads, k = 2",
                      lambda: lib.tkr_quest_select_blocks(F32, pq, 1, hh, dd, hh * dd, dd, pkmin, pkmax, nb, hh, kq,
                                                          0, 0, pqids, pqoffs, qk),
                      lambda: tr.quest_select_blocks(q, kmin, kmax, kq),
                      lambda: tr.quest_select_blocks(q, kmin, kmax, kq, out=(qids, qoffs)),
                      torch_quest, "bound, topk, sort"))
    for c in cases:
        ok(c.raw())
    return cases


def large_cases(quick):
    rng = np.random.default_rng(1)
    cases = []
    n = 1 << 20
    s = rng.uniform(-1, 1, n).astype(np.float32)
    idx = np.empty(n, np.uint32)
    cnt = (ctypes.c_size_t * 1)()
    ps, pidx, pcnt = a(s), a(idx), ctypes.addressof(cnt)
    for tau, pct in ((0.8, 10), (0.0, 50)):
        cases.append(Case("select", "threshold", f"n = 1M, {pct}% selected",
                          lambda tau=tau: lib.tkr_threshold_f32(ps, 1, n, n, tau, None, pidx, n, pcnt),
                          lambda tau=tau: tr.threshold(s, tau), lambda tau=tau: tr.threshold(s, tau, out=idx),
                          None, ""))
    x = rng.standard_normal(n).astype(np.float32)
    px = a(x)
    ws = np.empty(tr.topk_workspace_size(n), np.uint8)
    pws = a(ws)
    for k, label in ((64, "64"), (n // 10, "n/10")):
        out = np.empty(k, np.uint32)
        pout = a(out)
        cases.append(Case("select", "topk", f"n = 1M, k = {label}",
                          lambda k=k, pout=pout: lib.tkr_topk_f32(px, 1, n, n, k, None, pout, k, None, pws, ws.nbytes),
                          lambda k=k: tr.topk(x, k), lambda k=k, out=out: tr.topk(x, k, out=out, workspace=ws),
                          None, ""))
    rows, cols = (1024, 4096) if quick else (4096, 4096)
    src = rng.standard_normal((rows, cols), dtype=np.float32)
    gi = np.sort(rng.permutation(rows)[: rows // 2]).astype(np.uint32)
    dst = np.empty((len(gi), cols), np.float32)
    psrc, pgi, pdst = a(src), a(gi), a(dst)
    cases.append(Case("compact", "gather_rows", f"{len(gi)} of [{rows}, {cols}] f32",
                      lambda: lib.tkr_gather_rows(4, cols, psrc, rows, cols, pgi, len(gi), pdst, cols),
                      lambda: tr.gather_rows(src, gi), lambda: tr.gather_rows(src, gi, out=dst), None, ""))
    hq, hkv, d, n_cache, n_sel = 32, 8, 128, 8192, 2048
    q = rng.standard_normal((1, hq, d), dtype=np.float32)
    kc = rng.standard_normal((n_cache, hkv, d), dtype=np.float32)
    vc = rng.standard_normal((n_cache, hkv, d), dtype=np.float32)
    sel = np.sort(rng.choice(n_cache, n_sel, replace=False)).astype(np.uint32)
    ao = np.empty((1, hq, d), np.float32)
    keys = AttentionKeys(ctypes.sizeof(AttentionKeys), C["TKR_KEYS_INDICES"], 0, a(sel), n_sel)
    opts = AttentionOptions()
    opts.struct_size = ctypes.sizeof(AttentionOptions)
    opts.flags = C["TKR_ATTENTION_CAUSAL"]
    kpos = np.arange(n_cache, dtype=np.uint32)
    qpos = np.array([n_cache - 1], np.uint32)
    opts.q_positions, opts.k_positions = a(qpos), a(kpos)
    pq, pk, pv, pao = a(q), a(kc), a(vc), a(ao)
    cases.append(Case("attend", "attention", "decode: 1 q x 2048 of 8192 keys, 32/8 heads, d = 128 f32, causal",
                      lambda: lib.tkr_attention(F32, pq, 1, hq, d, hq * d, d, pk, pv, n_cache, hkv, hkv * d, d,
                                                hkv * d, d, keys, opts, pao, hq * d, d),
                      lambda: tr.attention(q, kc, vc, indices=sel, causal=True),
                      lambda: tr.attention(q, kc, vc, indices=sel, causal=True, out=ao), None, ""))
    for c in cases:
        assert c.raw() == 0
    return cases


def measure(cases, reps, rounds, budget):
    rows = []
    for c in cases:
        fns = {"raw": c.raw, "wrapper": c.wrapper, "wrapper out=": c.wrapper_out, "torch": c.torch}
        t = interleaved(fns, reps, rounds, budget)
        rows.append({"family": c.family, "function": c.function, "shape": c.shape, "torch_call": c.torch_name,
                     **{k: (t[k][0] if k in t else None) for k in fns},
                     "wall": {k: t[k][1] for k in t}})
    return rows


def run(threads=1, quick=False, only=None, large=True):
    """{"small": [...], "large": [...]}: per function, CPU seconds per call of the raw
    call, the wrapper, the wrapper with out= and torch (None where not applicable).
    only: a set of function names to measure (default: all)."""
    del threads  # single-threaded by nature: the cost of one call on the calling thread
    torch.set_num_threads(1)
    pick = lambda cases: [c for c in cases if only is None or c.function in only]  # noqa: E731
    small = measure(pick(small_cases()), reps=50 if quick else 200, rounds=7 if quick else 21,
                    budget=0.5 if quick else 2.0)
    big = measure(pick(large_cases(quick)), reps=1, rounds=9 if quick else 41,
                  budget=1.0 if quick else 6.0) if large else []
    return {"small": small, "large": big}


def us(t):
    return "-" if t is None else f"{t * 1e6:.2f} us" if t < 1e-3 else f"{t * 1e3:.3f} ms"


def small_table(rows):
    out = []
    for r in rows:
        over = lambda t: "-" if t is None else f"{(t - r['raw']) * 1e6:+.2f} us"  # noqa: E731
        out.append([r["function"], r["shape"], us(r["raw"]), us(r["wrapper"]), over(r["wrapper"]),
                    us(r["wrapper out="]), over(r["wrapper out="]), us(r["torch"]), r["torch_call"]])
    return table(out, ["function", "input", "raw C call", "wrapper", "wrapper - raw", "wrapper, out=",
                       "out= - raw", "torch", "torch call"])


def large_table(rows):
    out = []
    for r in rows:
        ratio = lambda t: "-" if t is None else f"{t / r['raw']:.3f}"  # noqa: E731
        out.append([r["function"], r["shape"], us(r["raw"]), us(r["wrapper"]), ratio(r["wrapper"]),
                    us(r["wrapper out="]), ratio(r["wrapper out="])])
    return table(out, ["function", "input", "raw C call", "wrapper", "wrapper / raw", "wrapper, out=",
                       "out= / raw"])


if __name__ == "__main__":
    names = [x for x in sys.argv[1:] if not x.startswith("--")]
    res = run(quick="--quick" in sys.argv, only=set(names) if names else None,
              large="--small" not in sys.argv)
    print(f"tokenroute level {tr.get_isa()}; numpy header reader: {tr._arrays.FAST_HEADER}; "
          "CPU time of the calling thread, medians\n")
    print(small_table(res["small"]))
    print()
    print(large_table(res["large"]))
