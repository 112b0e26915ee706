#!/usr/bin/env python3
"""Issue 5 peers: PyTorch's CPU scaled_dot_product_attention (one thread) against
tokenroute's tkr_attention (through ctypes on target/release/libtokenroute.so), in the
same process, on the issue's shapes. Prints a table with ratios.

Run from the repository root after `cargo build --release`:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 1 \
        /work/peers-venv/bin/python benches/peers/attend.py [--quick]

Shapes:
- prefill: 512 queries x 1024 selected keys (every other token of a 2048-token cache),
  32 query heads over 8 KV heads, head dim 128, causal (the queries are the last 512
  selected keys, masked by position) and not. torch gets the selected keys pre-gathered
  (outside the timing), in its preferred [1, H, S, D] layout.
- decode: 1 query per head, 32 heads over 8 (and 32) KV heads, 2048 selected of 8192
  cached keys. torch must gather (index_select, allocating or into preallocated buffers)
  then run SDPA, or run dense SDPA over all keys; tokenroute reads the selected rows in
  place. The decode step is timed with cold caches (a 96 MiB eviction between calls,
  not timed) and warm.
"""
import ctypes
import os
import statistics
import sys
import time

import numpy as np
import torch

torch.set_num_threads(1)
QUICK = "--quick" in sys.argv
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
lib = ctypes.CDLL(os.path.join(ROOT, "target", "release", "libtokenroute.so"))

TKR_DTYPE_F32, TKR_DTYPE_BF16 = 1, 3
TKR_ATTENTION_CAUSAL, TKR_ATTENTION_BF16_DOT = 1, 2
TKR_KEYS_DENSE, TKR_KEYS_INDICES = 0, 1

c_size = ctypes.c_size_t
c_u32p = ctypes.POINTER(ctypes.c_uint32)


class Options(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size),
        ("scale", ctypes.c_float),
        ("flags", ctypes.c_uint32),
        ("window", ctypes.c_uint32),
        ("out_dtype", ctypes.c_uint32),
        ("q_positions", c_u32p),
        ("k_positions", c_u32p),
        ("lse", ctypes.POINTER(ctypes.c_float)),
        ("lse_token_stride", c_size),
        ("mass", ctypes.POINTER(ctypes.c_float)),
        ("mass_head_stride", c_size),
    ]


class Keys(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_size),
        ("kind", ctypes.c_uint32),
        ("block_lists", ctypes.c_uint32),
        ("indices", c_u32p),
        ("n_indices", c_size),
        ("block_size", c_size),
        ("query_block_size", c_size),
        ("block_offsets", ctypes.POINTER(c_size)),
        ("block_ids", c_u32p),
        ("n_block_ids", c_size),
    ]


lib.tkr_attention.restype = ctypes.c_uint32
lib.tkr_attention.argtypes = (
    [ctypes.c_uint32, ctypes.c_void_p] + [c_size] * 5 + [ctypes.c_void_p, ctypes.c_void_p] + [c_size] * 6
    + [ctypes.POINTER(Keys), ctypes.POINTER(Options), ctypes.c_void_p, c_size, c_size]
)
lib.tkr_get_isa.restype = ctypes.c_uint32
lib.tkr_isa_name.restype = ctypes.c_char_p
lib.tkr_isa_name.argtypes = [ctypes.c_uint32]


def ptr(a):
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data_ptr()


def u32p(a):
    return a.ctypes.data_as(c_u32p)


FLUSH = np.zeros(96 << 20, dtype=np.uint8)


def evict():
    FLUSH[::64] += 1


def bench(fn, reps, cold=False):
    """Median seconds of `reps` calls (after one warm-up); cold: evict caches first."""
    fn()
    ts = []
    for _ in range(reps):
        if cold:
            evict()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def tkr_call(dtype, q, n_q, h_q, d, k, v, n_k, h_kv, keys, opts, out):
    st = lib.tkr_attention(dtype, ptr(q), n_q, h_q, d, h_q * d, d, ptr(k), ptr(v), n_k, h_kv,
                           h_kv * d, d, h_kv * d, d, ctypes.byref(keys), ctypes.byref(opts),
                           ptr(out), h_q * d, d)
    assert st == 0, st


def keys_of(sel):
    kk = Keys()
    kk.struct_size = ctypes.sizeof(Keys)
    if sel is None:
        kk.kind = TKR_KEYS_DENSE
    else:
        kk.kind = TKR_KEYS_INDICES
        kk.indices = u32p(sel)
        kk.n_indices = len(sel)
    return kk


def opts_of(flags, qpos, kpos):
    o = Options()
    o.struct_size = ctypes.sizeof(Options)
    o.flags = flags
    o.q_positions = u32p(qpos)
    o.k_positions = u32p(kpos)
    return o


rows = []


def report(name, secs, work, unit, base=None):
    rate = work / secs / 1e9
    rows.append((name, secs * 1e3, rate, unit, base / secs if base else None))
    ratio = f"{base / secs:8.2f}x" if base else ""
    print(f"{name:58s} {secs * 1e3:9.3f} ms {rate:8.1f} {unit} {ratio}", flush=True)


def prefill():
    n_q, h_q, h_kv, d, n_cache = 512, 32, 8, 128, 2048
    g = torch.Generator().manual_seed(1)
    q = torch.rand(n_q, h_q, d, generator=g) * 2 - 1
    kc = torch.rand(n_cache, h_kv, d, generator=g) * 2 - 1
    vc = torch.rand(n_cache, h_kv, d, generator=g) * 2 - 1
    sel = np.arange(0, n_cache, 2, dtype=np.uint32)  # 1024 selected keys
    kpos = np.arange(n_cache, dtype=np.uint32)
    qpos = sel[-n_q:].copy()
    reps = 3 if QUICK else 7
    print(f"\nprefill: {n_q} queries x {len(sel)} selected keys, {h_q}/{h_kv} heads, d={d}")
    for causal in (False, True):
        vis = (kpos[sel][None, :] <= qpos[:, None]) if causal else np.ones((n_q, len(sel)), bool)
        flops = 4.0 * vis.sum() * d * h_q
        mask = torch.from_numpy(vis)
        tag = "causal" if causal else "full"
        for dt, tdt, code in (("f32", torch.float32, TKR_DTYPE_F32), ("bf16", torch.bfloat16, TKR_DTYPE_BF16)):
            qt = q.to(tdt).permute(1, 0, 2).unsqueeze(0).contiguous()
            ks = kc[torch.from_numpy(sel.astype(np.int64))].to(tdt).permute(1, 0, 2).unsqueeze(0).contiguous()
            vs = vc[torch.from_numpy(sel.astype(np.int64))].to(tdt).permute(1, 0, 2).unsqueeze(0).contiguous()
            ke = ks.repeat_interleave(h_q // h_kv, dim=1).contiguous()
            ve = vs.repeat_interleave(h_q // h_kv, dim=1).contiguous()
            am = mask if causal else None
            t_gqa = bench(lambda: torch.nn.functional.scaled_dot_product_attention(qt, ks, vs, attn_mask=am, enable_gqa=True), reps)
            t_exp = bench(lambda: torch.nn.functional.scaled_dot_product_attention(qt, ke, ve, attn_mask=am), reps)
            t_torch = min(t_gqa, t_exp)
            report(f"prefill {dt} {tag}: torch SDPA (gqa)", t_gqa, flops, "GFLOP/s")
            report(f"prefill {dt} {tag}: torch SDPA (K/V expanded to 32 heads)", t_exp, flops, "GFLOP/s")
            # tokenroute: the cache and the index list, nothing gathered.
            npdt = np.float32 if dt == "f32" else np.uint16
            qn = q.to(tdt).contiguous().view(torch.int16 if dt == "bf16" else torch.float32).numpy().view(npdt)
            kn = kc.to(tdt).contiguous().view(torch.int16 if dt == "bf16" else torch.float32).numpy().view(npdt)
            vn = vc.to(tdt).contiguous().view(torch.int16 if dt == "bf16" else torch.float32).numpy().view(npdt)
            out = np.zeros(n_q * h_q * d, np.float32)
            kk = keys_of(sel)
            flag = TKR_ATTENTION_CAUSAL if causal else 0
            o = opts_of(flag, qpos, kpos)
            o.out_dtype = TKR_DTYPE_F32
            t = bench(lambda: tkr_call(code, qn, n_q, h_q, d, kn, vn, n_cache, h_kv, kk, o, out), reps)
            report(f"prefill {dt} {tag}: tokenroute (index list)", t, flops, "GFLOP/s", t_torch)
            if dt == "bf16":
                o2 = opts_of(flag | TKR_ATTENTION_BF16_DOT, qpos, kpos)
                o2.out_dtype = TKR_DTYPE_F32
                t = bench(lambda: tkr_call(code, qn, n_q, h_q, d, kn, vn, n_cache, h_kv, kk, o2, out), reps)
                report(f"prefill {dt} {tag}: tokenroute BF16_DOT (index list)", t, flops, "GFLOP/s", t_torch)
            # Agreement with torch (the exact path, f32 output).
            ref = torch.nn.functional.scaled_dot_product_attention(qt.float(), ke.float(), ve.float(), attn_mask=am)
            tkr_call(code, qn, n_q, h_q, d, kn, vn, n_cache, h_kv, kk, o, out)
            mine = torch.from_numpy(out.reshape(n_q, h_q, d)).permute(1, 0, 2).unsqueeze(0)
            err = (mine - ref).abs().max().item()
            print(f"    max |tokenroute - torch(f32 math on the same inputs)| = {err:.2e}")


def decode(h_kv):
    h_q, d, n_cache, n_sel = 32, 128, 8192, 2048
    rng = np.random.default_rng(2)
    sel = np.sort(rng.choice(n_cache, n_sel, replace=False)).astype(np.uint32)
    kpos = np.arange(n_cache, dtype=np.uint32)
    qpos = np.array([n_cache], np.uint32)
    reps = 5 if QUICK else 15
    print(f"\ndecode: 1 query x {n_sel} of {n_cache} keys, {h_q}/{h_kv} heads, d={d}")
    g = torch.Generator().manual_seed(3)
    for dt, tdt, code, esz in (("f32", torch.float32, TKR_DTYPE_F32, 4), ("bf16", torch.bfloat16, TKR_DTYPE_BF16, 2)):
        # torch: head-major cache [1, H_kv, n, d] (its preferred layout).
        kc = (torch.rand(1, h_kv, n_cache, d, generator=g) * 2 - 1).to(tdt)
        vc = (torch.rand(1, h_kv, n_cache, d, generator=g) * 2 - 1).to(tdt)
        q = (torch.rand(1, h_q, 1, d, generator=g) * 2 - 1).to(tdt)
        idx = torch.from_numpy(sel.astype(np.int64))
        kbuf = torch.empty(1, h_kv, n_sel, d, dtype=tdt)
        vbuf = torch.empty(1, h_kv, n_sel, d, dtype=tdt)
        sdpa = torch.nn.functional.scaled_dot_product_attention
        gqa = h_kv != h_q

        def t_alloc():
            return sdpa(q, kc.index_select(2, idx), vc.index_select(2, idx), enable_gqa=gqa)

        def t_reuse():
            torch.index_select(kc, 2, idx, out=kbuf)
            torch.index_select(vc, 2, idx, out=vbuf)
            return sdpa(q, kbuf, vbuf, enable_gqa=gqa)

        def t_dense():
            return sdpa(q, kc, vc, enable_gqa=gqa)

        touched = 2.0 * n_sel * h_kv * d * esz
        res = {}
        for cold in (True, False):
            tag = "cold" if cold else "warm"
            ta = bench(t_alloc, reps, cold)
            tr = bench(t_reuse, reps, cold)
            td = bench(t_dense, reps, cold)
            best = min(ta, tr)
            report(f"decode {dt} kv{h_kv} {tag}: torch index_select + SDPA", ta, touched, "GB/s")
            report(f"decode {dt} kv{h_kv} {tag}: torch index_select(out=) + SDPA", tr, touched, "GB/s")
            report(f"decode {dt} kv{h_kv} {tag}: torch dense SDPA (all keys)", td, touched, "GB/s")
            # tokenroute: token-major cache [n, H_kv, d] with the same values.
            npdt = np.float32 if dt == "f32" else np.uint16
            view = torch.int16 if dt == "bf16" else torch.float32
            kn = kc[0].permute(1, 0, 2).contiguous().view(view).numpy().view(npdt)
            vn = vc[0].permute(1, 0, 2).contiguous().view(view).numpy().view(npdt)
            qn = q[0, :, 0, :].contiguous().view(view).numpy().view(npdt)
            out = np.zeros(h_q * d, np.float32)
            o = opts_of(TKR_ATTENTION_CAUSAL, qpos, kpos)
            o.out_dtype = TKR_DTYPE_F32
            kk = keys_of(sel)
            t = bench(lambda: tkr_call(code, qn, 1, h_q, d, kn, vn, n_cache, h_kv, kk, o, out), reps, cold)
            report(f"decode {dt} kv{h_kv} {tag}: tokenroute sparse (index list)", t, touched, "GB/s", best)
            kd = keys_of(None)
            tdn = bench(lambda: tkr_call(code, qn, 1, h_q, d, kn, vn, n_cache, h_kv, kd, o, out), reps, cold)
            report(f"decode {dt} kv{h_kv} {tag}: tokenroute dense (all keys)", tdn, 4 * touched, "GB/s", td)
            print(f"    tokenroute dense / sparse(25%) = {tdn / t:.2f}x;  tokenroute vs torch best gather+SDPA = {best / t:.1f}x")
            res[tag] = (best, t)
        tkr_call(code, qn, 1, h_q, d, kn, vn, n_cache, h_kv, kk, o, out)
        ref = t_alloc().float()[0, :, 0, :]
        err = (torch.from_numpy(out.reshape(h_q, d)) - ref).abs().max().item()
        print(f"    max |tokenroute - torch| = {err:.2e}")


if __name__ == "__main__":
    isa = lib.tkr_get_isa()
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), 1 thread; "
          f"tokenroute ISA level {lib.tkr_isa_name(isa).decode()}")
    prefill()
    decode(8)
    decode(32)
