"""The per-step library calls of the decode methods at SmolLM2's shapes (9 query heads,
3 KV heads, head_dim 64, f16 cache), each timed through the public Python wrapper and
as the bare C call (the same arguments prepared once, through ``tokenroute.lib()``): the
difference is what the wrapper costs per call. One layer's calls; a decode step makes
them once per layer (30 layers, Quest's first layers dense).

    python examples/llm/overhead.py [context] [budget] [block]
"""

from __future__ import annotations

import ctypes
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import model as M  # noqa: E402,F401  (single-threaded BLAS before numpy)
import numpy as np  # noqa: E402

import tokenroute as tr  # noqa: E402
from tokenroute import attend as A  # noqa: E402

perf = time.perf_counter


def _median_us(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = perf()
        fn()
        ts.append(perf() - t0)
    return 1e6 * float(np.median(ts))


def _raw_attention(q, k, v, out, ids=None, offs=None, block=0):
    """A bare ``tkr_attention`` call over contiguous f16 tensors (decode, f32 out)."""
    L = tr.lib()
    keys = A.AttentionKeys()
    L.tkr_attention_keys_init(ctypes.byref(keys))
    if ids is not None:
        keys.kind = A.TKR_KEYS_BLOCKS
        keys.block_lists = A.TKR_BLOCK_LISTS_PER_Q_HEAD
        keys.block_size = block
        keys.query_block_size = 1
        keys.block_offsets = offs.ctypes.data
        keys.block_ids = ids.ctypes.data
        keys.n_block_ids = ids.size
    opts = A.AttentionOptions()
    L.tkr_attention_options_init(ctypes.byref(opts))
    opts.out_dtype = A.TKR_DTYPE_F32
    _, hq, d = q.shape
    n, g, _ = k.shape
    args = (A.TKR_DTYPE_F16, q.ctypes.data, 1, hq, d, hq * d, d, k.ctypes.data, v.ctypes.data, n, g,
            g * d, d, g * d, d, ctypes.byref(keys), ctypes.byref(opts), out.ctypes.data, hq * d, d)
    fn = L.tkr_attention

    def call():
        st = fn(*args)
        assert st == 0, st

    return call


def measure(context=8192, budget=1024, block=16, reps=200):
    """Rows ``(call, wrapper us, bare C us)`` for one layer of one decode step."""
    rng = np.random.default_rng(0)
    hq, g, d = 9, 3, 64
    k = rng.standard_normal((context, g, d)).astype(np.float16)
    v = rng.standard_normal((context, g, d)).astype(np.float16)
    q = rng.standard_normal((1, hq, d)).astype(np.float16)
    out = np.empty((1, hq, d), np.float32)
    nb = -(-context // block)
    kmin, kmax = tr.key_block_summary(k, block)
    kb = budget // block
    sel = tr.quest_select_blocks(q, kmin, kmax, kb, keep_first=1, keep_last=1)
    L = tr.lib()
    rows = []

    # Summary of the newest block.
    def w_sum():
        tr.key_block_summary(k, block, block_begin=nb - 1, block_end=nb, kmin=kmin, kmax=kmax)

    sargs = (A.TKR_DTYPE_F16, k.ctypes.data, context, g, d, g * d, d, block, nb - 1, nb,
             kmin.ctypes.data, kmax.ctypes.data)

    def r_sum():
        assert L.tkr_key_block_summary(*sargs) == 0

    rows.append(("key_block_summary (newest block)", _median_us(w_sum, reps), _median_us(r_sum, reps)))

    # Quest block selection.
    def w_sel():
        tr.quest_select_blocks(q, kmin, kmax, kb, keep_first=1, keep_last=1)

    ids = np.empty(hq * kb, np.uint32)
    offs = np.empty(hq + 1, np.uintp)
    cnt = ctypes.c_size_t()
    qargs = (A.TKR_DTYPE_F16, q.ctypes.data, 1, hq, d, hq * d, d, kmin.ctypes.data, kmax.ctypes.data, nb, g,
             kb, 1, 1, ids.ctypes.data, offs.ctypes.data, ctypes.byref(cnt))

    def r_sel():
        assert L.tkr_quest_select_blocks(*qargs) == 0

    rows.append((f"quest_select_blocks ({kb} of {nb} blocks)", _median_us(w_sel, reps), _median_us(r_sel, reps)))

    # Block-sparse attention over the selection.
    sids = np.ascontiguousarray(sel.block_ids)
    soffs = np.ascontiguousarray(sel.block_offsets, dtype=np.uintp)

    def w_att():
        tr.attention(q, k, v, block_size=block, query_block_size=1, block_offsets=soffs, block_ids=sids,
                     block_lists="per_q_head", out_dtype="f32", out=out)

    rows.append((f"attention, {kb} blocks of {block} per query head", _median_us(w_att, reps),
                 _median_us(_raw_attention(q, k, v, out, sids, soffs, block), reps)))

    # Dense attention over the whole cache.
    def w_dense():
        tr.attention(q, k, v, out_dtype="f32", out=out)

    rows.append((f"attention, dense over {context} keys", _median_us(w_dense, max(reps // 4, 10)),
                 _median_us(_raw_attention(q, k, v, out), max(reps // 4, 10))))

    # H2O: attention with mass over the budget, the top-k, three compactions.
    kk = k[: budget + 1].copy()
    vv = v[: budget + 1].copy()
    acc = rng.random((g, budget + 1)).astype(np.float32)

    def w_h2o_att():
        m = np.zeros((g, budget + 1), np.float32)
        tr.attention(q, kk, vv, out_dtype="f32", out=out, mass=m, mass_per_head=True)

    rows.append((f"attention + mass, dense over {budget + 1} keys (h2o)", _median_us(w_h2o_att, reps), None))
    keep = tr.topk(acc, budget, keep_last=budget // 2)

    def w_topk():
        tr.topk(acc, budget, keep_last=budget // 2)

    rows.append(("topk per KV head (h2o)", _median_us(w_topk, reps), None))

    def w_compact():
        # Repeating the compaction on the same arrays moves the same rows each time.
        tr.kv_compact(kk, keep, per_head=True)
        tr.kv_compact(vv, keep, per_head=True)
        tr.kv_compact(acc[:, :, None], keep, layout="head_major", per_head=True)

    rows.append(("kv_compact of K, V and the mass (h2o, one token evicted)", _median_us(w_compact, reps), None))
    return rows


def table(rows) -> str:
    lines = ["| call (one layer) | Python wrapper us | bare C call us | wrapper overhead us |",
             "|---|---:|---:|---:|"]
    for name, w, r in rows:
        lines.append(f"| {name} | {w:.1f} | {'-' if r is None else f'{r:.1f}'} | "
                     f"{'-' if r is None else f'{w - r:.1f}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    a = [int(x) for x in sys.argv[1:4]]
    print(table(measure(*a)))
