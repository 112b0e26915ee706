"""Ragged attention batches and implicit causal alignment through the Python package:
every sequence bit-identical to a separate call on every level, implicit positions equal
to the explicit ones they stand for, bad batches refused with nothing written."""

import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError


def status(f):
    with pytest.raises(TokenrouteError) as e:
        f()
    return e.value.name


CU_Q = [0, 3, 3, 11, 12]
CU_K = [0, 40, 45, 45, 110]


def tensors(rng, hq=4, hkv=2, d=16):
    q = rng.standard_normal((CU_Q[-1] + 2, hq, d)).astype(np.float32)
    k = rng.standard_normal((CU_K[-1] + 3, hkv, d)).astype(np.float32)
    v = rng.standard_normal((CU_K[-1] + 3, hkv, d)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("keys", ["dense", "indices", "seq_indices", "blocks"])
@pytest.mark.parametrize("align", ["bottom_right", "top_left", None])
def test_ragged_batch_equals_separate_calls(rng, each_level, keys, align):
    q, k, v = tensors(rng)
    # A sequence without keys, except for a shared index list (below every n_k).
    cu_k = [0, 40, 45, 46, 110] if keys == "indices" else CU_K
    n = len(CU_Q) - 1
    kw = {}
    per_seq = [{} for _ in range(n)]
    if keys == "indices":
        kw = per_seq_kw = {"indices": [0, 0]}
        per_seq = [per_seq_kw] * n
    elif keys == "seq_indices":
        lists = [[0, 5, 7], [1], [], [3, 3, 60, 2]]  # local rows of each sequence
        kw = {"indices": sum(lists, []), "index_offsets": np.cumsum([0] + [len(x) for x in lists])}
        per_seq = [{"indices": x} for x in lists]
    elif keys == "blocks":
        offs, ids = [0], []
        for b in range(n):
            nq, nk = CU_Q[b + 1] - CU_Q[b], cu_k[b + 1] - cu_k[b]
            start = len(ids)
            for qb in range(-(-nq // 2)):
                ids.extend(x for x in range(-(-nk // 8)) if (x + qb) % 3)
                offs.append(len(ids))
            per_seq[b] = {"block_size": 8, "query_block_size": 2, "block_ids": ids[start:],
                          "block_offsets": np.array(offs[-1 - (-(-nq // 2)):]) - start}
        kw = {"block_size": 8, "query_block_size": 2, "block_offsets": offs, "block_ids": ids}
    causal = keys != "indices"

    def run():
        return tokenroute.attention(q, k, v, cu_seqlens_q=CU_Q, cu_seqlens_k=cu_k, causal=causal,
                                    causal_align=align, return_lse=True, return_mass=True,
                                    mass_per_head=True, **kw)

    res = each_level(run)
    ref = res.pop("scalar")
    rows = CU_Q[-1]  # rows past the last sequence are never written
    for level, r in res.items():
        assert np.array_equal(r.out[:rows].view(np.uint32), ref.out[:rows].view(np.uint32)), level
    for b in range(n):
        q0, q1, k0, k1 = CU_Q[b], CU_Q[b + 1], cu_k[b], cu_k[b + 1]
        if q0 == q1:
            continue
        # Implicit positions per sequence (default bottom-right), as explicit ones.
        nq, nk = q1 - q0, k1 - k0
        qpos = np.arange(nq) + (max(nk - nq, 0) if align != "top_left" else 0)
        kpos = np.arange(nk) + (max(nq - nk, 0) if align != "top_left" else 0)
        one = tokenroute.attention(q[q0:q1], k[k0:k1], v[k0:k1], causal=causal,
                                   q_positions=qpos, k_positions=kpos, return_lse=True,
                                   return_mass=True, mass_per_head=True, **per_seq[b])
        assert np.array_equal(ref.out[q0:q1].view(np.uint32), one.out.view(np.uint32)), b
        assert np.array_equal(ref.lse[q0:q1].view(np.uint32), one.lse.view(np.uint32)), b
        assert np.array_equal(ref.mass[:, k0:k1].view(np.uint32), one.mass.view(np.uint32)), b


def test_causal_align_equals_explicit_positions(rng):
    q = rng.standard_normal((5, 2, 8)).astype(np.float32)
    k = rng.standard_normal((9, 1, 8)).astype(np.float32)
    for align, qpos in (("top_left", np.arange(5)), ("bottom_right", np.arange(4, 9))):
        a = tokenroute.attention(q, k, k, causal=True, window=3, causal_align=align)
        b = tokenroute.attention(q, k, k, causal=True, window=3, q_positions=qpos,
                                 k_positions=np.arange(9))
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), align


def test_bad_batches(rng):
    q, k, v = tensors(rng)
    out = np.full(q.shape, 7.0, np.float32)
    bad = [
        (dict(cu_seqlens_q=CU_Q), "TKR_STATUS_INVALID_ARGUMENT"),
        (dict(cu_seqlens_q=CU_Q, cu_seqlens_k=CU_K[:-1]), "TKR_STATUS_INVALID_ARGUMENT"),
        (dict(cu_seqlens_q=[0, 5, 4, 6, 7], cu_seqlens_k=CU_K), "TKR_STATUS_INVALID_ARGUMENT"),
        (dict(cu_seqlens_q=CU_Q, cu_seqlens_k=[0, 1, 2, 3, 500]), "TKR_STATUS_OUT_OF_RANGE"),
        (dict(cu_seqlens_q=CU_Q, cu_seqlens_k=CU_K, indices=[0, 41]), "TKR_STATUS_OUT_OF_RANGE"),
        (dict(index_offsets=[0, 1], indices=[0]), "TKR_STATUS_INVALID_ARGUMENT"),
        (dict(causal=True, causal_align="middle"), "TKR_STATUS_INVALID_ARGUMENT"),
        (dict(causal=True, causal_align="top_left", q_positions=np.arange(len(q)),
              k_positions=np.arange(len(k))), "TKR_STATUS_INVALID_ARGUMENT"),
    ]
    for kw, want in bad:
        assert status(lambda: tokenroute.attention(q, k, v, out=out, **kw)) == want, kw
        assert (out == 7.0).all(), kw


def test_sinks_join_the_denominator(rng, each_level):
    q = rng.standard_normal((6, 4, 8)).astype(np.float32)
    k = rng.standard_normal((30, 2, 8)).astype(np.float32)
    v = rng.standard_normal((30, 2, 8)).astype(np.float32)
    sinks = np.array([-np.inf, 0.0, 1.5, 6.0], np.float32)
    res = each_level(lambda: tokenroute.attention(q, k, v, sinks=sinks, return_lse=True))
    ref = res.pop("scalar")
    for level, r in res.items():
        assert np.array_equal(r.out.view(np.uint32), ref.out.view(np.uint32)), level
    # float64: softmax over the logits and the sink, the sink carrying no value.
    s = np.einsum("qhd,khd->qhk", q.astype(np.float64), np.repeat(k, 2, axis=1)) / np.sqrt(8)
    m = np.maximum(s.max(-1), sinks.astype(np.float64))
    p = np.exp(s - m[..., None])
    den = p.sum(-1) + np.exp(sinks - m)
    want = np.einsum("qhk,khd->qhd", p, np.repeat(v, 2, axis=1)) / den[..., None]
    assert np.abs(ref.out - want).max() < 1e-5
    assert np.abs(ref.lse - (m + np.log(den))).max() < 1e-5
    assert status(lambda: tokenroute.attention(q, k, v, sinks=sinks[:3])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.attention(q, k, v, sinks=sinks, return_mass=True)) == "TKR_STATUS_UNSUPPORTED"


def test_two_sided_windows(rng, each_level):
    q = rng.standard_normal((20, 2, 8)).astype(np.float32)
    k = rng.standard_normal((20, 1, 8)).astype(np.float32)
    for window, right, causal in ((4, 3, False), (0, 2, False), (6, 2**32 - 1, False), (4, 7, True)):
        res = each_level(lambda: tokenroute.attention(q, k, k, window=window, window_right=right,
                                                      causal=causal, causal_align="top_left"))
        ref = res.pop("scalar")
        for level, r in res.items():
            assert np.array_equal(r.view(np.uint32), ref.view(np.uint32)), level
        i, j = np.arange(20)[:, None], np.arange(20)[None, :]
        vis = (j <= i + (0 if causal else right)) & ((window == 0) | (j > i - window))
        s = np.einsum("qhd,khd->qhk", q.astype(np.float64), np.repeat(k, 2, axis=1)) / np.sqrt(8)
        s = np.where(vis[:, None, :], s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        want = np.einsum("qhk,khd->qhd", p / p.sum(-1, keepdims=True), np.repeat(k, 2, axis=1))
        assert np.abs(ref - want).max() < 1e-5, (window, right, causal)
