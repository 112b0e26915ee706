"""Attention family through the Python package, against a float64 numpy reference:
dense / index / block key sets, causal and windowed masking, GQA, output dtypes, the
log-sum-exp and attention-mass outputs, the LSE merge, and the Quest block calls."""

import ctypes
import importlib
import re

import ml_dtypes
import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError

from conftest import REPO

amod = importlib.import_module("tokenroute.attend")


def status(f):
    with pytest.raises(TokenrouteError) as e:
        f()
    return e.value.name


def ref_attention(q, k, v, visible=None, scale=None, softcap=None, alibi=None, q_pos=None, k_pos=None,
                  bias=None):
    """(out, lse, mass [n_heads_kv, n_k]) in float64; visible(i, h) -> K row list
    (duplicates count twice), default every row; softcap c: logits c * tanh(x / c);
    alibi: slopes per query head with positions q_pos, k_pos."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    n_q, hq, d = q.shape
    n_k, hkv, _ = k.shape
    scale = 1 / np.sqrt(d) if not scale else scale
    out = np.zeros((n_q, hq, v.shape[-1]))
    lse = np.full((n_q, hq), -np.inf)
    mass = np.zeros((hkv, n_k))
    for i in range(n_q):
        for h in range(hq):
            g = h // (hq // hkv)
            rows = np.arange(n_k) if visible is None else np.asarray(visible(i, h), dtype=np.int64)
            if rows.size == 0:
                continue
            logits = scale * (k[rows, g] @ q[i, h])
            if softcap:
                logits = softcap * np.tanh(logits / softcap)
            if alibi is not None:
                logits = logits - alibi[h] * np.abs(float(q_pos[i]) - np.asarray(k_pos, np.float64)[rows])
            if bias is not None:
                logits = logits + np.asarray(bias, np.float64)[h, i, rows]
            m = logits.max()
            p = np.exp(logits - m)
            lse[i, h] = m + np.log(p.sum())
            p /= p.sum()
            out[i, h] = p @ v[rows, g]
            np.add.at(mass[g], rows, p)
    return out, lse, mass


def tol(a, b, t=2e-5):
    return np.max(np.abs(np.asarray(a, np.float64) - b), initial=0) <= t * (1 + np.max(np.abs(b), initial=0))


@pytest.mark.parametrize("n_q,n_k,hq,hkv,d", [(1, 1, 1, 1, 1), (5, 70, 4, 2, 16), (33, 130, 6, 1, 32), (0, 4, 2, 2, 8)])
def test_dense_gqa_lse_mass(rng, n_q, n_k, hq, hkv, d):
    q = rng.standard_normal((n_q, hq, d)).astype(np.float32)
    k = rng.standard_normal((n_k, hkv, d)).astype(np.float32)
    v = rng.standard_normal((n_k, hkv, d)).astype(np.float32)
    out, lse, mass = tokenroute.attention(q, k, v, return_lse=True, return_mass=True, mass_per_head=True)
    ro, rl, rm = ref_attention(q, k, v)
    assert out.shape == (n_q, hq, d) and out.dtype == np.float32
    assert tol(out, ro) and tol(lse, rl) and tol(mass, rm)
    r = tokenroute.attention(q, k, v, return_mass=True)
    assert r.lse is None and tol(r.mass, rm.sum(0))
    # Mass is ADDED into a caller's array.
    acc = np.ones(n_k, np.float32)
    tokenroute.attention(q, k, v, mass=acc)
    assert tol(acc, rm.sum(0) + 1)


def test_strided_views_fused_qkv_and_head_major(rng):
    n, h, d = 20, 3, 16
    qkv = rng.standard_normal((n, 3, h, d)).astype(np.float32)  # a fused projection
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    assert not q.flags.c_contiguous
    out = tokenroute.attention(q, k, v)
    ro, _, _ = ref_attention(q, k, v)
    assert tol(out, ro)
    # Head-major views ([h, n, d] transposed to [n, h, d]) and a strided output.
    qh = np.ascontiguousarray(q.transpose(1, 0, 2)).transpose(1, 0, 2)
    big = np.zeros((n, h, 2 * d), np.float32)
    o = big[:, :, :d]
    tokenroute.attention(qh, k, v, out=o)
    assert tol(o, ro) and not big[:, :, d:].any()
    # A non-unit inner stride is copied first.
    q2 = np.repeat(q, 2, axis=2)[:, :, ::2]
    assert tol(tokenroute.attention(q2, k, v), ro)


def test_index_keys_duplicates(rng):
    q = rng.standard_normal((4, 2, 8)).astype(np.float32)
    k = rng.standard_normal((50, 2, 8)).astype(np.float32)
    v = rng.standard_normal((50, 2, 8)).astype(np.float32)
    idx = np.array([3, 3, 10, 49, 0])
    out, _, mass = tokenroute.attention(q, k, v, indices=idx, return_mass=True)
    ro, _, rm = ref_attention(q, k, v, lambda i, h: idx)
    assert tol(out, ro) and tol(mass, rm.sum(0))
    out = tokenroute.attention(q, k, v, indices=[])
    assert not out.any()


@pytest.mark.parametrize("lists", ["shared", "per_kv_head", "per_q_head"])
def test_block_keys(rng, lists):
    n_q, n_k, hq, hkv, d, bs, qbs = 6, 37, 4, 2, 8, 8, 4
    q = rng.standard_normal((n_q, hq, d)).astype(np.float32)
    k = rng.standard_normal((n_k, hkv, d)).astype(np.float32)
    v = rng.standard_normal((n_k, hkv, d)).astype(np.float32)
    n_qb = 2
    n_lists = n_qb * {"shared": 1, "per_kv_head": hkv, "per_q_head": hq}[lists]
    lists_ids = [np.sort(rng.permutation(5)[: 1 + (L % 3)]) for L in range(n_lists)]
    offs = np.concatenate([[0], np.cumsum([x.size for x in lists_ids])])
    ids = np.concatenate(lists_ids)

    def visible(i, h):
        qb = i // qbs
        L = {"shared": qb, "per_kv_head": (h // (hq // hkv)) * n_qb + qb, "per_q_head": h * n_qb + qb}[lists]
        return np.concatenate([np.arange(b * bs, min((b + 1) * bs, n_k)) for b in lists_ids[L]])

    out = tokenroute.attention(q, k, v, block_size=bs, query_block_size=qbs, block_offsets=offs,
                               block_ids=ids, block_lists=lists)
    ro, _, _ = ref_attention(q, k, v, visible)
    assert tol(out, ro)


def test_causal_window_positions(rng):
    n, h, d = 40, 2, 16
    q = rng.standard_normal((n, h, d)).astype(np.float32)
    k = rng.standard_normal((n, h, d)).astype(np.float32)
    v = rng.standard_normal((n, h, d)).astype(np.float32)
    out = tokenroute.attention(q, k, v, causal=True)
    ro, _, _ = ref_attention(q, k, v, lambda i, hh: np.arange(i + 1))
    assert tol(out, ro)
    out = tokenroute.attention(q, k, v, window=5)
    ro, _, _ = ref_attention(q, k, v, lambda i, hh: np.arange(max(0, i - 4), i + 1))
    assert tol(out, ro)
    # Decode: 3 queries at the end of the sequence (the default positions).
    out = tokenroute.attention(q[-3:], k, v, causal=True)
    ro, _, _ = ref_attention(q[-3:], k, v, lambda i, hh: np.arange(n - 3 + i + 1))
    assert tol(out, ro)
    # Explicit positions: keys kept after pruning keep their original positions.
    kpos = np.arange(0, 2 * n, 2)
    qpos = np.array([0, 11, 79])
    out, lse, _ = tokenroute.attention(q[:3], k, v, causal=True, q_positions=qpos, k_positions=kpos, return_lse=True)
    ro, rl, _ = ref_attention(q[:3], k, v, lambda i, hh: np.flatnonzero(kpos <= qpos[i]))
    assert tol(out, ro) and tol(lse, rl)
    # A query that sees nothing gets zeros and -inf.
    out, lse, _ = tokenroute.attention(q[:1], k[1:], v[1:], causal=True, q_positions=[0], k_positions=np.arange(1, n), return_lse=True)
    assert not out.any() and np.all(np.isneginf(lse))


@pytest.mark.parametrize("dt,odt", [("f16", None), ("bf16", None), ("f32", "f16"), ("f32", "bf16"), ("bf16", "f32")])
def test_dtypes(rng, dt, odt):
    npdt = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}
    q = rng.standard_normal((7, 2, 16)).astype(npdt[dt])
    k = rng.standard_normal((30, 2, 16)).astype(npdt[dt])
    v = rng.standard_normal((30, 2, 16)).astype(npdt[dt])
    out = tokenroute.attention(q, k, v, out_dtype=odt)
    assert out.dtype == npdt[odt or dt]
    ro, _, _ = ref_attention(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32))
    assert tol(out.astype(np.float32), ro, 1e-2)
    if dt != "f32":
        bits = tokenroute.attention(q.view(np.uint16), k.view(np.uint16), v.view(np.uint16), dtype=dt, out_dtype=odt)
        assert np.array_equal(bits.view(np.uint8), out.view(np.uint8))


def test_bf16_dot_and_scale(rng):
    q = rng.standard_normal((3, 1, 32)).astype(np.float32)
    k = rng.standard_normal((9, 1, 32)).astype(np.float32)
    v = rng.standard_normal((9, 1, 32)).astype(np.float32)
    ro, _, _ = ref_attention(q, k, v, scale=0.3)
    assert tol(tokenroute.attention(q, k, v, scale=0.3), ro)
    assert tol(tokenroute.attention(q, k, v, scale=0.3, bf16_dot=True), ro, 5e-2)


@pytest.mark.parametrize("cap,scale", [(1.0, 2.0), (50.0, 0.0), (0.3, -4.0)])
def test_softcap(rng, cap, scale):
    q = rng.standard_normal((6, 4, 16)).astype(np.float32)
    k = rng.standard_normal((90, 2, 16)).astype(np.float32)
    v = rng.standard_normal((90, 2, 16)).astype(np.float32)
    out, lse, mass = tokenroute.attention(q, k, v, softcap=cap, scale=scale, return_lse=True,
                                          return_mass=True, mass_per_head=True)
    want, want_lse, want_mass = ref_attention(q, k, v, scale=scale or None, softcap=cap)
    assert tol(out, want) and tol(lse, want_lse) and tol(mass, want_mass)
    plain = tokenroute.attention(q, k, v, scale=scale)
    assert not np.array_equal(out, plain)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        assert status(lambda: tokenroute.attention(q, k, v, softcap=bad)) == "TKR_STATUS_INVALID_ARGUMENT"


def test_alibi(rng):
    q = rng.standard_normal((6, 4, 16)).astype(np.float32)
    k = rng.standard_normal((90, 2, 16)).astype(np.float32)
    v = rng.standard_normal((90, 2, 16)).astype(np.float32)
    slopes = np.array([0.5, 0.25, 0.125, 0.0625], np.float32)
    # Default positions: keys at 0..n_k-1, queries at the last n_q (no causal masking).
    out = tokenroute.attention(q, k, v, alibi_slopes=slopes)
    want, _, _ = ref_attention(q, k, v, alibi=slopes, q_pos=np.arange(84, 90), k_pos=np.arange(90))
    assert tol(out, want)
    # Causal, with a softcap, explicit positions.
    qp, kp = np.arange(6, dtype=np.uint32) * 20 + 10, np.arange(90, dtype=np.uint32) * 2
    out = tokenroute.attention(q, k, v, alibi_slopes=slopes, softcap=3.0, causal=True,
                               q_positions=qp, k_positions=kp)
    want, _, _ = ref_attention(q, k, v, visible=lambda i, h: np.flatnonzero(kp <= qp[i]), softcap=3.0,
                               alibi=slopes, q_pos=qp, k_pos=kp)
    assert tol(out, want)
    assert status(lambda: tokenroute.attention(q, k, v, alibi_slopes=slopes[:3])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, v, alibi_slopes=[np.nan] * 4)) == "TKR_STATUS_INVALID_ARGUMENT"


@pytest.mark.parametrize("shape", [(4, 6, 90), (1, 6, 90), (4, 1, 90), (90,)])
def test_bias(rng, shape):
    q = rng.standard_normal((6, 4, 16)).astype(np.float32)
    k = rng.standard_normal((90, 2, 16)).astype(np.float32)
    v = rng.standard_normal((90, 2, 16)).astype(np.float32)
    bias = rng.standard_normal(shape).astype(np.float32)
    bias[..., 7::11] = -np.inf  # a float padding mask
    out, lse, mass = tokenroute.attention(q, k, v, bias=bias, return_lse=True, return_mass=True,
                                          mass_per_head=True)
    full = np.broadcast_to(bias, (4, 6, 90))
    want, want_lse, want_mass = ref_attention(q, k, v, bias=full)
    assert tol(out, want) and tol(lse, want_lse) and tol(mass, want_mass)
    # A non-contiguous view (every other key of a wider tensor) is copied, same result.
    wide = np.repeat(full, 2, axis=2)
    assert np.array_equal(tokenroute.attention(q, k, v, bias=wide[:, :, ::2]), out)
    assert status(lambda: tokenroute.attention(q, k, v, bias=np.zeros((3, 6, 90), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"


@pytest.mark.parametrize("d, dv", [(192, 128), (16, 40), (3, 1)])
def test_v_head_dim(rng, d, dv):
    """A V head size different from q/k's (multi-head latent attention): taken from v's
    last dimension, the output [n_q, heads, dv]; prefill with lse and mass, split-K
    decoding, bf16, a v sliced from a fused k|v buffer, a given out, bad shapes."""
    n_k = 1100
    q = rng.standard_normal((5, 4, d)).astype(np.float32)
    kv = rng.standard_normal((n_k, 2, d + dv)).astype(np.float32)
    k, v = np.ascontiguousarray(kv[:, :, :d]), kv[:, :, d:]  # v: a strided view
    out, lse, mass = tokenroute.attention(q, k, v, causal=True, return_lse=True, return_mass=True,
                                          mass_per_head=True)
    assert out.shape == (5, 4, dv)
    qp = np.arange(n_k - 5, n_k)
    want, want_lse, want_mass = ref_attention(q, k, v, visible=lambda i, h: np.arange(qp[i] + 1))
    assert tol(out, want) and tol(lse, want_lse) and tol(mass, want_mass)
    # One query over every key: split-K chunks merged over dv.
    one = tokenroute.attention(q[:1], k, v)
    want1, _, _ = ref_attention(q[:1], k, v)
    assert one.shape == (1, 4, dv) and tol(one, want1)
    # bf16 inputs into a given f32 out.
    b = [x.astype(ml_dtypes.bfloat16) for x in (q, k, v)]
    o = np.full((5, 4, dv), 7.0, np.float32)
    assert tokenroute.attention(*b, out=o, out_dtype="f32") is o
    wantb, _, _ = ref_attention(*(x.astype(np.float32) for x in b))
    assert tol(o, wantb)
    # Bad shapes: out with q's head size (when they differ), v without elements.
    if d != dv:
        assert status(lambda: tokenroute.attention(q, k, v, out=np.zeros((5, 4, d), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, np.zeros((n_k, 2, 0), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, v[:, :1])) == "TKR_STATUS_INVALID_ARGUMENT"


@pytest.mark.parametrize("shape", [(4, 6, 90), (1, 6, 90), (90,)])
def test_bias_16bit(rng, shape):
    # float16 and bfloat16 biases are read as they are and give the bits of the float32
    # bias with the same values.
    q = rng.standard_normal((6, 4, 16)).astype(np.float32)
    k = rng.standard_normal((90, 2, 16)).astype(np.float32)
    v = rng.standard_normal((90, 2, 16)).astype(np.float32)
    bias = (3 * rng.standard_normal(shape)).astype(np.float32)
    bias[..., 5::13] = -np.inf
    for t in [np.float16, ml_dtypes.bfloat16]:
        b16 = bias.astype(t)
        got = tokenroute.attention(q, k, v, bias=b16, causal=True, causal_align="bottom_right")
        want = tokenroute.attention(q, k, v, bias=b16.astype(np.float32), causal=True,
                                    causal_align="bottom_right")
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), t
        # the rounding to 16 bits shows: the float32 bias gives other values
        assert not np.array_equal(tokenroute.attention(q, k, v, bias=bias, causal=True,
                                                       causal_align="bottom_right"), got)


def test_attention_errors(rng):
    q = np.zeros((2, 4, 8), np.float32)
    k = np.zeros((5, 2, 8), np.float32)
    assert status(lambda: tokenroute.attention(q, k, k, indices=[5])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.attention(q, k, k, indices=[-1])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.attention(q, np.zeros((5, 3, 8), np.float32), np.zeros((5, 3, 8), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k[:4])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k.astype(np.float16))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q[0], k, k)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, scale=float("inf"))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, out_dtype="f64")) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, indices=[1], block_size=2)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, block_size=2, query_block_size=1, block_offsets=[0, 1], block_ids=[0])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, block_size=2, query_block_size=1, block_offsets=[0, 1, 2], block_ids=[0, 3])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.attention(q, k, k, causal=True, q_positions=[1])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, out=np.zeros((2, 4, 16), np.float32)[:, :, ::2])) == "TKR_STATUS_BAD_STRIDE"
    assert status(lambda: tokenroute.attention(q, k, k, out=np.zeros((2, 4, 8), np.float16))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, k, mass=np.zeros(4, np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    buf = np.zeros((16, 4, 8), np.float32)
    assert status(lambda: tokenroute.attention(buf[:2], k, k, out=buf[1:3])) == "TKR_STATUS_OVERLAP"


@pytest.mark.parametrize("odt", ["f32", "bf16"])
def test_merge_equals_one_call(rng, odt):
    n_q, hq, d, n_k = 5, 4, 16, 150
    q = rng.standard_normal((n_q, hq, d)).astype(np.float32)
    k = rng.standard_normal((n_k, 2, d)).astype(np.float32)
    v = rng.standard_normal((n_k, 2, d)).astype(np.float32)
    cuts = [0, 40, 41, 150]
    outs, lses = [], []
    for a, b in zip(cuts, cuts[1:]):
        o, l, _ = tokenroute.attention(q, k[a:b], v[a:b], return_lse=True)
        outs.append(o)
        lses.append(l)
    po = np.stack(outs)  # [P, n_q, hq, d]: taken as n_q * hq rows
    pl = np.stack(lses)
    out, lse = tokenroute.attention_merge(po, pl, out_dtype=odt, return_lse=True)
    ro, rl, _ = ref_attention(q, k, v)
    assert out.shape == (n_q * hq, d)
    assert tol(out.astype(np.float32), ro.reshape(-1, d), 1e-4 if odt == "f32" else 1e-2)
    assert tol(lse, rl.reshape(-1), 1e-4)
    # Strided parts (every other row) and an empty part list.
    sub = tokenroute.attention_merge(po.reshape(3, -1, d)[:, ::2], pl.reshape(3, -1)[:, ::2])
    assert tol(sub, ro.reshape(-1, d)[::2], 1e-4)
    e = tokenroute.attention_merge(np.zeros((0, 3, 4), np.float32), np.zeros((0, 3), np.float32))
    assert not e.any()


def test_merge_errors():
    po = np.zeros((2, 3, 4), np.float32)
    assert status(lambda: tokenroute.attention_merge(po, np.zeros((2, 2), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention_merge(po.astype(np.float16), np.zeros((2, 3), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention_merge(po, np.zeros((2, 3), np.float32), out_dtype="x")) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention_merge(po, np.zeros((2, 3), np.float32), out=np.zeros((3, 8), np.float32)[:, ::2])) == "TKR_STATUS_BAD_STRIDE"


def test_quest_summary_bound_select(rng):
    n_k, hkv, hq, d, bs = 45, 2, 4, 8, 8
    k = rng.standard_normal((n_k, hkv, d)).astype(np.float32)
    v = rng.standard_normal((n_k, hkv, d)).astype(np.float32)
    q = rng.standard_normal((3, hq, d)).astype(np.float32)
    kmin, kmax = tokenroute.key_block_summary(k, bs)
    nb = 6
    assert kmin.shape == (nb, hkv, d)
    for b in range(nb):
        blk = k[b * bs:(b + 1) * bs]
        assert np.array_equal(kmin[b], blk.min(0)) and np.array_equal(kmax[b], blk.max(0))
    # Only the last block recomputed, into the caller's arrays.
    k2 = k.copy()
    k2[-1] += 10
    tokenroute.key_block_summary(k2, bs, block_begin=nb - 1, kmin=kmin, kmax=kmax)
    assert np.array_equal(kmax[-1], k2[40:].max(0)) and np.array_equal(kmax[0], k[:8].max(0))
    kmin, kmax = tokenroute.key_block_summary(k, bs)
    bound = tokenroute.key_block_bound(q, kmin, kmax)
    assert bound.shape == (3, hq, nb)
    for i in range(3):
        for h in range(hq):
            g = h // 2
            for b in range(nb):
                exact = (k[b * bs:(b + 1) * bs, g].astype(np.float64) @ q[i, h]).max()
                naive = np.maximum(q[i, h] * kmin[b, g], q[i, h] * kmax[b, g]).astype(np.float64).sum()
                assert bound[i, h, b] >= exact and abs(bound[i, h, b] - naive) < 1e-4
    sel = tokenroute.quest_select_blocks(q, kmin, kmax, 3, keep_first=1)
    assert sel.k == 3 and sel.block_ids.size == 3 * hq * 3
    for h in range(hq):
        for i in range(3):
            L = h * 3 + i
            ids = sel.block_ids[sel.block_offsets[L]:sel.block_offsets[L + 1]]
            order = np.argsort(-bound[i, h, 1:], kind="stable")[:2] + 1
            assert np.array_equal(ids, np.sort(np.concatenate([[0], order])))
    out = tokenroute.attention(q, k, v, block_size=bs, query_block_size=1, block_offsets=sel.block_offsets,
                               block_ids=sel.block_ids, block_lists="per_q_head")

    def visible(i, h):
        L = h * 3 + i
        ids = sel.block_ids[sel.block_offsets[L]:sel.block_offsets[L + 1]]
        return np.concatenate([np.arange(b * bs, min((b + 1) * bs, n_k)) for b in ids])

    ro, _, _ = ref_attention(q, k, v, visible)
    assert tol(out, ro)
    # k larger than the block count is clamped.
    assert tokenroute.quest_select_blocks(q, kmin, kmax, 100).k == nb


def test_quest_errors(rng):
    k = np.zeros((16, 2, 8), np.float32)
    q = np.zeros((2, 3, 8), np.float32)
    kmin, kmax = tokenroute.key_block_summary(k, 4)
    assert status(lambda: tokenroute.key_block_summary(k, 0)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.key_block_summary(k, 4, block_end=5)) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.key_block_summary(k, 4, kmin=np.zeros(3, np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.key_block_bound(q, kmin, kmax)) == "TKR_STATUS_INVALID_ARGUMENT"  # 3 heads over 2
    q4 = np.zeros((2, 4, 8), np.float32)
    assert status(lambda: tokenroute.key_block_bound(q4, kmin, kmax[:2])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.key_block_bound(q4[:, :, :4], kmin, kmax)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.quest_select_blocks(q4, kmin, kmax, 2, keep_first=2, keep_last=1)) == "TKR_STATUS_INVALID_ARGUMENT"


def test_structs_match_the_header():
    header = (REPO / "include" / "tokenroute.h").read_text()
    for cname, cls, init in (
        ("tkr_attention_keys", amod.AttentionKeys, amod._keys_init),
        ("tkr_attention_options", amod.AttentionOptions, amod._options_init),
        ("tkr_attention_batch", amod.AttentionBatch, amod._batch_init),
    ):
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (cname, cname), header, re.S).group(1)
        body = re.sub(r"//[^\n]*", "", body)
        fields = re.findall(r"([\w\s\*]+?)\s*\b(\w+);", body)
        assert [f[1] for f in fields] == [f[0] for f in cls._fields_], cname
        o = cls()
        init(ctypes.byref(o))
        assert o.struct_size == ctypes.sizeof(cls), cname
        init(None)  # NULL is ignored


def test_attention_bit_identical_on_every_level(rng, each_level):
    q = rng.standard_normal((9, 4, 32)).astype(np.float32)
    k = rng.standard_normal((130, 2, 32)).astype(np.float32)
    v = rng.standard_normal((130, 2, 32)).astype(np.float32)
    res = each_level(lambda: tokenroute.attention(q, k, v, return_lse=True, return_mass=True))
    ref = res.pop("scalar")
    for level, r in res.items():
        assert np.array_equal(r.out, ref.out) and np.array_equal(r.lse, ref.lse), level
