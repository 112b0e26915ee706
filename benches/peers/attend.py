#!/usr/bin/env python3
"""Issue 5 peers: PyTorch's CPU scaled_dot_product_attention against tokenroute.attention
(the public wrapper, on target/release/libtokenroute.so; the raw tkr_attention call
through the declared ctypes function timed beside it), in the same process, on the
issue's shapes. Prints a table with ratios.

Run from the repository root after `cargo build --release`:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 1 \\
        python benches/peers/attend.py [threads] [--quick]

Shapes:
- prefill: 512 queries x 1024 selected keys (every other token of a 2048-token cache),
  32 query heads over 8 KV heads, head dim 128, causal (the queries are the last 512
  selected keys, masked by position) and not. torch gets the selected keys pre-gathered
  (outside the timing), in its preferred [1, H, S, D] layout, both with enable_gqa and
  with K/V expanded to 32 heads. bf16 also runs tokenroute's opt-in AVX512-BF16 dot path.
- decode: 1 query per head, 32 heads over 8 (and 32) KV heads, 2048 selected of 8192
  cached keys. torch must gather (index_select, allocating or into preallocated buffers)
  then run SDPA, or run dense SDPA over all keys; tokenroute reads the selected rows in
  place. The decode step is timed with cold caches (a 96 MiB eviction before every call,
  not timed) and warm (right after an untimed call of the same implementation). Dense attention over all 8192 keys is timed against the 25% subset.

All the implementations of a case are timed interleaved, round after round (medians).
With threads > 1, torch uses that many threads and tokenroute splits the KV heads (with
their query heads) across that many Python threads (one call each).
`run(threads, quick)` returns Result rows (benches/peers/run.py drives every family).
"""
import common  # noqa: F401 (first: it removes OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE before numpy loads)
import ctypes
import sys

import numpy as np
import torch

from common import Result, addr, chunks, interleaved, load_package, run_parallel, set_threads, table

tr = load_package()
lib = tr.lib()
attend = sys.modules["tokenroute.attend"]
Keys, Options = attend.AttentionKeys, attend.AttentionOptions

TKR_DTYPE_F32, TKR_DTYPE_BF16 = 1, 3
TKR_ATTENTION_CAUSAL, TKR_ATTENTION_BF16_DOT = 1, 2
TKR_KEYS_DENSE, TKR_KEYS_INDICES = 0, 1

SDPA = torch.nn.functional.scaled_dot_product_attention
FLUSH = np.zeros(96 << 20, dtype=np.uint8)


def evict():
    FLUSH[::64] += 1


def keys_of(sel):
    kk = Keys()
    kk.struct_size = ctypes.sizeof(Keys)
    if sel is None:
        kk.kind = TKR_KEYS_DENSE
    else:
        kk.kind = TKR_KEYS_INDICES
        kk.indices = addr(sel)
        kk.n_indices = len(sel)
    return kk


def opts_of(flags, qpos, kpos):
    o = Options()
    o.struct_size = ctypes.sizeof(Options)
    o.flags = flags
    o.q_positions = addr(qpos)
    o.k_positions = addr(kpos)
    o.out_dtype = TKR_DTYPE_F32
    return o


def tkr(dtype, q, n_q, h_q, d, k, v, n_k, h_kv, keys, opts, out, threads):
    """A callable running the raw tkr_attention, split over `threads` Python threads by
    KV head groups (each with its query heads); the arguments are converted once, here."""
    esz = q.itemsize
    grp = h_q // h_kv
    calls = []
    for a, b in chunks(h_kv, threads):
        args = (dtype, addr(q) + a * grp * d * esz, n_q, (b - a) * grp, d, h_q * d, d,
                addr(k) + a * d * esz, addr(v) + a * d * esz, n_k, b - a, h_kv * d, d, h_kv * d, d,
                keys, opts, addr(out) + a * grp * d * 4, h_q * d, d)
        calls.append(lambda args=args: lib.tkr_attention(*args))

    def one():
        assert calls[0]() == 0

    if len(calls) == 1:
        return one
    return lambda: run_parallel(calls)


def wrapper(dt, q, h_q, k, v, h_kv, out, threads, **kw):
    """A callable running tokenroute.attention (the public wrapper) on the same data,
    split like `tkr` (head-group views of q, k, v and out, read in place)."""
    dtype = "bf16" if dt == "bf16" else None
    grp = h_q // h_kv
    q3, out3 = q.reshape(-1, h_q, q.shape[-1]), out.reshape(-1, h_q, q.shape[-1])
    calls = [lambda a=a, b=b: tr.attention(q3[:, a * grp:b * grp], k[:, a:b], v[:, a:b], out=out3[:, a * grp:b * grp],
                                           dtype=dtype, out_dtype="f32", **kw)
             for a, b in chunks(h_kv, threads)]
    if len(calls) == 1:
        return calls[0]
    return lambda: run_parallel(calls)


def as_np(t, dt):
    """The bits of a contiguous torch tensor as numpy (bf16 as uint16)."""
    t = t.contiguous()
    return t.view(torch.int16).numpy().view(np.uint16) if dt == "bf16" else t.numpy()


def prefill(threads, quick, log=print):
    n_q, h_q, h_kv, d, n_cache = 512, 32, 8, 128, 2048
    g = torch.Generator().manual_seed(1)
    q = torch.rand(n_q, h_q, d, generator=g) * 2 - 1
    kc = torch.rand(n_cache, h_kv, d, generator=g) * 2 - 1
    vc = torch.rand(n_cache, h_kv, d, generator=g) * 2 - 1
    sel = np.arange(0, n_cache, 2, dtype=np.uint32)  # 1024 selected keys
    kpos = np.arange(n_cache, dtype=np.uint32)
    qpos = sel[-n_q:].copy()
    rounds = 3 if quick else 7
    size = f"{n_q}q x {len(sel)}k, {h_q}/{h_kv} heads, d={d}"
    rows = []
    for causal in (False, True):
        vis = (kpos[sel][None, :] <= qpos[:, None]) if causal else np.ones((n_q, len(sel)), bool)
        flops = 4.0 * vis.sum() * d * h_q
        mask = torch.from_numpy(vis) if causal else None
        tag = "causal" if causal else "full"
        flag = TKR_ATTENTION_CAUSAL if causal else 0
        for dt, tdt, code in (("f32", torch.float32, TKR_DTYPE_F32), ("bf16", torch.bfloat16, TKR_DTYPE_BF16)):
            qt = q.to(tdt).permute(1, 0, 2).unsqueeze(0).contiguous()
            ks = kc[torch.from_numpy(sel.astype(np.int64))].to(tdt).permute(1, 0, 2).unsqueeze(0).contiguous()
            vs = vc[torch.from_numpy(sel.astype(np.int64))].to(tdt).permute(1, 0, 2).unsqueeze(0).contiguous()
            ke = ks.repeat_interleave(h_q // h_kv, dim=1).contiguous()
            ve = vs.repeat_interleave(h_q // h_kv, dim=1).contiguous()
            # tokenroute: the cache and the index list, nothing gathered.
            qn, kn, vn = as_np(q.to(tdt), dt), as_np(kc.to(tdt), dt), as_np(vc.to(tdt), dt)
            out = np.zeros(n_q * h_q * d, np.float32)
            kk = keys_of(sel)
            o = opts_of(flag, qpos, kpos)
            o2 = opts_of(flag | TKR_ATTENTION_BF16_DOT, qpos, kpos)
            pos = dict(indices=sel, causal=causal, q_positions=qpos, k_positions=kpos)
            fns = {
                "ours": wrapper(dt, qn, h_q, kn, vn, h_kv, out, threads, **pos),
                "raw": tkr(code, qn, n_q, h_q, d, kn, vn, n_cache, h_kv, kk, o, out, threads),
                "ours bf16_dot": (wrapper(dt, qn, h_q, kn, vn, h_kv, out, threads, bf16_dot=True, **pos)
                                  if dt == "bf16" else None),
                "raw bf16_dot": (tkr(code, qn, n_q, h_q, d, kn, vn, n_cache, h_kv, kk, o2, out, threads)
                                 if dt == "bf16" else None),
                "torch SDPA (gqa)": lambda: SDPA(qt, ks, vs, attn_mask=mask, enable_gqa=True),
                "torch SDPA (K/V expanded)": lambda: SDPA(qt, ke, ve, attn_mask=mask),
            }
            t = interleaved(fns, rounds=rounds, budget=1.0)
            # Agreement with torch (f32 math on the same inputs; the exact path).
            ref = SDPA(qt.float(), ke.float(), ve.float(), attn_mask=mask)
            fns["ours"]()
            mine = torch.from_numpy(out.reshape(n_q, h_q, d)).permute(1, 0, 2).unsqueeze(0)
            err = (mine - ref).abs().max().item()
            peers = {k: t[k] for k in ("torch SDPA (gqa)", "torch SDPA (K/V expanded)")}
            note = f"max abs difference to torch f32 math: {err:.1e}"
            rows.append(Result("attend", f"prefill {dt} {tag}", size, threads, t["ours"], peers, flops, note,
                               unit="GFLOP/s", raw=t["raw"]))
            if dt == "bf16":
                rows.append(Result("attend", f"prefill bf16 {tag} (BF16_DOT opt-in)", size, threads,
                                   t["ours bf16_dot"], peers, flops, "AVX512-BF16 dot products", unit="GFLOP/s",
                                   raw=t["raw bf16_dot"]))
            for r in rows[-2 if dt == "bf16" else -1:]:
                log(fmt_row(r))
    return rows


def decode(h_kv, threads, quick, log=print):
    h_q, d, n_cache, n_sel = 32, 128, 8192, 2048
    rng = np.random.default_rng(2)
    sel = np.sort(rng.choice(n_cache, n_sel, replace=False)).astype(np.uint32)
    kpos = np.arange(n_cache, dtype=np.uint32)
    qpos = np.array([n_cache], np.uint32)
    rounds = 5 if quick else 15
    size = f"1q x {n_sel} of {n_cache}k, {h_q}/{h_kv} heads, d={d}"
    g = torch.Generator().manual_seed(3)
    rows = []
    for dt, tdt, code, esz in (("f32", torch.float32, TKR_DTYPE_F32, 4), ("bf16", torch.bfloat16, TKR_DTYPE_BF16, 2)):
        # torch: head-major cache [1, H_kv, n, d] (its preferred layout).
        kc = (torch.rand(1, h_kv, n_cache, d, generator=g) * 2 - 1).to(tdt)
        vc = (torch.rand(1, h_kv, n_cache, d, generator=g) * 2 - 1).to(tdt)
        q = (torch.rand(1, h_q, 1, d, generator=g) * 2 - 1).to(tdt)
        idx = torch.from_numpy(sel.astype(np.int64))
        kbuf = torch.empty(1, h_kv, n_sel, d, dtype=tdt)
        vbuf = torch.empty(1, h_kv, n_sel, d, dtype=tdt)
        gqa = h_kv != h_q

        def t_alloc():
            return SDPA(q, kc.index_select(2, idx), vc.index_select(2, idx), enable_gqa=gqa)

        def t_reuse():
            torch.index_select(kc, 2, idx, out=kbuf)
            torch.index_select(vc, 2, idx, out=vbuf)
            return SDPA(q, kbuf, vbuf, enable_gqa=gqa)

        def t_dense():
            return SDPA(q, kc, vc, enable_gqa=gqa)

        # tokenroute: token-major cache [n, H_kv, d] with the same values.
        kn = as_np(kc[0].permute(1, 0, 2), dt)
        vn = as_np(vc[0].permute(1, 0, 2), dt)
        qn = as_np(q[0, :, 0, :], dt)
        out = np.zeros(h_q * d, np.float32)
        o = opts_of(TKR_ATTENTION_CAUSAL, qpos, kpos)
        kk, kd = keys_of(sel), keys_of(None)
        pos = dict(causal=True, q_positions=qpos, k_positions=kpos)
        ours = wrapper(dt, qn, h_q, kn, vn, h_kv, out, threads, indices=sel, **pos)
        raw = tkr(code, qn, 1, h_q, d, kn, vn, n_cache, h_kv, kk, o, out, threads)
        ours_dense = wrapper(dt, qn, h_q, kn, vn, h_kv, out, threads, **pos)
        raw_dense = tkr(code, qn, 1, h_q, d, kn, vn, n_cache, h_kv, kd, o, out, threads)
        raw()
        want = out.copy()
        ours()
        assert np.array_equal(out, want)
        err = (torch.from_numpy(out.reshape(h_q, d)) - t_alloc().float()[0, :, 0, :]).abs().max().item()
        touched = 2.0 * n_sel * h_kv * d * esz
        for cold in (True, False):
            tag = "cold" if cold else "warm"
            t = interleaved({"ours": ours, "raw": raw, "ours dense": ours_dense, "raw dense": raw_dense,
                             "torch index_select + SDPA": t_alloc,
                             "torch index_select(out=) + SDPA": t_reuse, "torch dense SDPA (all keys)": t_dense},
                            rounds=rounds, budget=2.0, before=evict if cold else None, repeat=1 if cold else 2)
            peers = {k: t[k] for k in ("torch index_select + SDPA", "torch index_select(out=) + SDPA",
                                       "torch dense SDPA (all keys)")}
            note = (f"dense over all keys / 25% sparse: {t['ours dense'] / t['ours']:.2f}x; "
                    f"max abs difference to torch: {err:.1e}")
            rows.append(Result("attend", f"decode {dt} kv{h_kv} {tag} caches", size, threads, t["ours"], peers,
                               touched, note, raw=t["raw"]))
            rows.append(Result("attend", f"decode {dt} kv{h_kv} {tag} caches, dense (all keys)",
                               f"1q x {n_cache}k, {h_q}/{h_kv} heads, d={d}", threads, t["ours dense"],
                               {"torch dense SDPA (all keys)": t["torch dense SDPA (all keys)"]}, 4 * touched,
                               raw=t["raw dense"]))
            for r in rows[-2:]:
                log(fmt_row(r))
    return rows


def fmt_row(r):
    best, name = r.best_peer()
    rate = r.nbytes / r.ours / 1e9
    return (f"{r.workload:48s} {r.ours * 1e3:9.3f} ms (raw {r.raw * 1e3:9.3f} ms) {rate:7.1f} {r.unit:7s} best peer {name}: "
            f"{best * 1e3:9.3f} ms ({best / r.ours:.2f}x)  {r.note}")


def run(threads=1, quick=False, log=lambda s: None):
    set_threads(threads)
    kvs = (8,) if quick else (8, 32)
    rows = prefill(threads, quick, log)
    for h_kv in kvs:
        rows += decode(h_kv, threads, quick, log)
    return rows


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    threads = int(args[0]) if args else 1
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), {threads} thread(s); "
          f"tokenroute ISA level {tr.get_isa()}\n", flush=True)
    results = run(threads, quick="--quick" in sys.argv, log=lambda s: print(s, flush=True))
    out = []
    for r in results:
        best, name = r.best_peer()
        cells = [f"{t * 1e3:.3f} ms" if t else "-" for t in r.peers.values()]
        out.append([f"{r.workload}", r.size, f"{r.ours * 1e3:.3f} ms ({r.nbytes / r.ours / 1e9:.1f} {r.unit})",
                    f"{r.raw * 1e3:.3f} ms", " / ".join(f"{k}: {c}" for k, c in zip(r.peers, cells)),
                    f"{best / r.ours:.2f}x ({name})"])
    print()
    print(table(out, ["workload", "shape", "tokenroute", "raw C call", "peers", "best peer time / tokenroute"]))
