"""torch.ops.tokenroute.* against PyTorch's own operators (run once per ISA level by
.ci/test-torch.sh; skipped when torch is not installed, unless TOKENROUTE_REQUIRE_TORCH=1)."""

import math
import os

import pytest

if os.environ.get("TOKENROUTE_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch")

import tokenroute
import tokenroute.threads as threads_mod
import tokenroute.torch as tt
from tokenroute import TokenrouteError

F = torch.nn.functional
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


# --- top-k / threshold ---------------------------------------------------------------


def ref_topk(x, k, sorted_=True):
    """Our order made explicit: numbers by value, NaN below every number, ties to the
    lower index (torch.sort is stable: equal keys keep ascending indices)."""
    x = x.float()
    nan = x.isnan()
    key = torch.where(nan, torch.full_like(x, -math.inf), x)
    order = torch.sort(key, descending=True, stable=True).indices
    order = order[torch.sort(nan[order].to(torch.int8), stable=True).indices]
    idx = order[:k]
    if not sorted_:
        idx = idx.sort().values
    return idx


def test_topk_matches_torch_topk(gen):
    x = torch.rand(50257, generator=gen)
    v, i = tt.topk(x, 50)
    rv, ri = torch.topk(x, 50)
    assert torch.equal(v, rv) and torch.equal(i, ri) and i.dtype == torch.int64
    v, i = torch.ops.tokenroute.topk(x, 50, False)
    assert torch.equal(i, ri.sort().values) and torch.equal(v, x[i])


@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (64, 64), (1000, 1), (4099, 517), (0, 0)])
def test_topk_ties_nan_signed_zero(gen, n, k):
    x = torch.randint(0, 5, (n,), generator=gen).float()  # many ties
    if n > 4:
        x[1] = float("nan")
        x[3] = -0.0
        x[4] = 0.0
        x[n // 2] = -math.inf
        x[-1] = float("nan")
    for sorted_ in (True, False):
        v, i = tt.topk(x, k, sorted=sorted_)
        assert torch.equal(i, ref_topk(x, k, sorted_))
        assert torch.equal(v.view(torch.int32), x[i].view(torch.int32))


def test_topk_batched_strided_half(gen):
    big = torch.rand(6, 300, generator=gen)
    s = big[:, :257]  # row stride 300: passed in place
    v, i = tt.topk(s, 10)
    rv, ri = torch.topk(s, 10)
    assert torch.equal(i, ri) and torch.equal(v, rv)
    for dt in (torch.float16, torch.bfloat16):
        h = s.to(dt)
        v, i = tt.topk(h, 10, sorted=False)
        assert v.dtype == dt
        for r in range(6):
            assert torch.equal(i[r], ref_topk(h[r], 10, False))


def test_topk_forced_keeps_and_lengths(gen):
    s = torch.rand(3, 50, generator=gen)
    mask = torch.zeros(3, 50, dtype=torch.bool)
    mask[:, 20] = True
    v, i = tt.topk(s, 5, sorted=False, keep_first=1, keep_mask=mask, valid_lens=torch.tensor([50, 30, 25]))
    for r, L in enumerate([50, 30, 25]):
        row = i[r].tolist()
        assert 0 in row and 20 in row and max(row) < L
        rest = [j for j in range(1, L) if j != 20]
        best = sorted(rest, key=lambda j: (-s[r, j].item(), j))[:3]
        assert sorted(best + [0, 20]) == row


def test_threshold_matches_nonzero(gen):
    s = torch.rand(4, 333, generator=gen)
    s[0, 5] = float("nan")
    idx, counts = tt.threshold(s, 0.7)
    for r in range(4):
        want = (s[r] > 0.7).nonzero().reshape(-1)
        assert counts[r] == want.numel()
        assert torch.equal(idx[r, : counts[r]], want)
        assert (idx[r, counts[r]:] == -1).all()
    i1, c1 = tt.threshold(s[1], 0.7, keep_first=2)
    want = ((s[1] > 0.7) | (torch.arange(333) < 2)).nonzero().reshape(-1)
    assert torch.equal(i1, want) and int(c1) == want.numel()


# --- compaction ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES + [torch.int8, torch.int64, torch.bool])
def test_gather_rows_matches_index_select(gen, dtype):
    src = torch.randint(0, 100, (97, 5, 3), generator=gen).to(dtype)
    idx = torch.randint(0, 97, (40,), generator=gen)
    for ix in (idx, idx.to(torch.int32)):
        assert torch.equal(tt.gather_rows(src, ix), torch.index_select(src, 0, idx))
    wide = torch.randint(0, 100, (97, 40), generator=gen).to(dtype)
    view = wide[:, 3:18]  # strided rows, passed in place
    assert torch.equal(tt.gather_rows(view, idx), view[idx])
    one = wide[:, 7]  # 1-D, stride 40: rows of one element
    assert torch.equal(tt.gather_rows(one, idx), one[idx])


def test_out_views_written_in_place(gen):
    src = torch.rand(50, 16, generator=gen)
    idx = torch.tensor([4, 9, 9, 0])
    buf = torch.full((4, 24), -7.0)
    out = buf[:, 4:20]  # a view with row stride 24
    ptr = out.data_ptr()
    res = tt.gather_rows(src, idx, out=out)
    assert res.data_ptr() == ptr and out.data_ptr() == ptr
    assert torch.equal(buf[:, 4:20], src[idx])
    assert (buf[:, :4] == -7).all() and (buf[:, 20:] == -7).all()  # padding untouched
    # attention into a token-major view of a larger buffer
    q = torch.randn(5, 4, 8, generator=gen)
    k = torch.randn(9, 2, 8, generator=gen)
    v = torch.randn(9, 2, 8, generator=gen)
    obuf = torch.full((5, 4, 10), -3.0)
    o = obuf[:, :, 1:9]
    p = o.data_ptr()
    r = tt.attention(q, k, v, out=o)
    assert r.data_ptr() == p
    assert torch.allclose(obuf[:, :, 1:9], tt.attention(q, k, v))
    assert (obuf[:, :, 0] == -3).all() and (obuf[:, :, 9] == -3).all()


def test_scatter_rows_matches_index_copy(gen):
    dst = torch.rand(30, 6, generator=gen)
    idx = torch.randperm(30, generator=gen)[:11]
    src = torch.rand(11, 6, generator=gen)
    want = dst.clone().index_copy_(0, idx, src)
    p = dst.data_ptr()
    assert tt.scatter_rows(dst, idx, src).data_ptr() == p
    assert torch.equal(dst, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_add_rows_matches_index_add(gen, dtype):
    h = torch.randn(40, 33, generator=gen).to(dtype)
    idx = torch.randperm(40, generator=gen)[:17]
    y = torch.randn(17, 33, generator=gen).to(dtype)
    gate = torch.rand(17, generator=gen)
    # f32: bit-identical to index_add_ of the gated delta (product, then sum, rounded).
    want = (h.float().index_add_(0, idx, gate[:, None] * y.float())).to(dtype)
    tt.scatter_add_rows(h, idx, y, gate)
    assert torch.equal(h.view(torch.int16 if dtype != torch.float32 else torch.int32),
                       want.view(torch.int16 if dtype != torch.float32 else torch.int32))


def test_route_is_score_select_gather(gen):
    h = torch.randn(300, 64, generator=gen)
    w = torch.randn(64, generator=gen) / 8
    idx, sc, rows = tt.route(h, w, 0.1, k=30)
    assert torch.allclose(sc, torch.sigmoid(h[idx] @ w + 0.1), atol=1e-6)
    assert torch.equal(rows, h[idx])
    all_scores = tokenroute.score(h.numpy(), w.numpy()[None, :], bias=[0.1])[:, 0]
    assert torch.equal(idx, ref_topk(torch.from_numpy(all_scores), 30, False))
    idx2, sc2, rows2 = tt.route(h, w, 0.1, tau=0.5)
    assert torch.equal(idx2, (torch.from_numpy(all_scores) > 0.5).nonzero().reshape(-1))
    assert torch.equal(rows2, h[idx2])


# --- attention -----------------------------------------------------------------------


def sdpa_ref(q, k, v, visible, scale=None):
    """SDPA in f64 with a boolean mask [n_q, n_k] (or [hq, n_q, n_k]); GQA by repeating."""
    hq, hkv = q.shape[1], k.shape[1]
    rep = hq // hkv
    qq = q.double().transpose(0, 1)
    kk = k.double().repeat_interleave(rep, 1).transpose(0, 1)
    vv = v.double().repeat_interleave(rep, 1).transpose(0, 1)
    logits = (qq @ kk.transpose(1, 2)) * (scale or 1 / math.sqrt(q.shape[-1]))
    m = visible if visible.dim() == 3 else visible.unsqueeze(0)
    logits = logits.masked_fill(~m, -math.inf)
    lse = torch.logsumexp(logits, -1)
    p = torch.softmax(logits, -1).nan_to_num(0.0)
    out = (p @ vv).transpose(0, 1)
    return out, lse.transpose(0, 1), p


def bound(q, k, v, visible, dtype):
    """README's attention bound per row, as a scalar worst case."""
    scale = 1 / math.sqrt(q.shape[-1])
    a = (q.double().abs().sum(-1).amax() * k.double().abs().amax() * scale).item()
    n = visible.sum(-1).max().item()
    vmax = v.double().abs().max().item()
    u = {torch.float32: 2**-24, torch.float16: 2**-11, torch.bfloat16: 2**-8}[dtype]
    return 2**-17 * (1 + a + n / 64) * vmax + u * vmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2), (6, 1)])
def test_attention_dense_causal_vs_sdpa(gen, dtype, hq, hkv):
    n_q, n_k, d = 13, 40, 32
    q = torch.randn(n_q, hq, d, generator=gen).to(dtype)
    k = torch.randn(n_k, hkv, d, generator=gen).to(dtype)
    v = torch.randn(n_k, hkv, d, generator=gen).to(dtype)
    out, lse, _ = tt.attention(q, k, v, causal=True, return_lse=True)
    qpos = torch.arange(n_k - n_q, n_k)
    visible = torch.arange(n_k)[None, :] <= qpos[:, None]
    ref, rlse, _ = sdpa_ref(q, k, v, visible)
    assert out.dtype == dtype
    assert (out.double() - ref).abs().max() <= bound(q, k, v, visible, dtype)
    assert (lse.double() - rlse).abs().max() <= 1e-4
    if dtype == torch.float32:  # and torch's own SDPA with the same boolean mask
        t = F.scaled_dot_product_attention(q.transpose(0, 1), k.repeat_interleave(hq // hkv, 1).transpose(0, 1),
                                           v.repeat_interleave(hq // hkv, 1).transpose(0, 1), attn_mask=visible)
        assert torch.allclose(out, t.transpose(0, 1), atol=2e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_index_keys_window_mass(gen, dtype):
    n_q, n_k, hq, hkv, d = 6, 200, 4, 2, 16
    q = torch.randn(n_q, hq, d, generator=gen).to(dtype)
    k = torch.randn(n_k, hkv, d, generator=gen).to(dtype)
    v = torch.randn(n_k, hkv, d, generator=gen).to(dtype)
    keep = torch.randperm(n_k, generator=gen)[:70].sort().values
    qpos = torch.tensor([199, 150, 120, 199, 60, 10])
    out, lse, mass = tt.attention(q, k, v, indices=keep, causal=True, window=64, q_positions=qpos,
                                  return_lse=True, return_mass=True, mass_per_head=True)
    sel = torch.zeros(n_k, dtype=torch.bool)
    sel[keep] = True
    kp = torch.arange(n_k)
    visible = sel[None, :] & (kp[None, :] <= qpos[:, None]) & (kp[None, :] > qpos[:, None] - 64)
    ref, rlse, p = sdpa_ref(q, k, v, visible)
    assert (out.double() - ref).abs().max() <= bound(q, k, v, visible, dtype)
    fin = rlse.isfinite()
    assert (lse.double()[fin] - rlse[fin]).abs().max() <= 1e-4
    assert (lse[~fin] == -math.inf).all()
    want_mass = p.reshape(hkv, hq // hkv, n_q, n_k).sum((1, 2))
    assert (mass.double() - want_mass).abs().max() <= 1e-4


def test_attention_blocks_and_quest_vs_masked_sdpa(gen):
    n_k, hq, hkv, d, bs = 300, 4, 2, 32, 16
    q = torch.randn(1, hq, d, generator=gen)
    k = torch.randn(n_k, hkv, d, generator=gen)
    v = torch.randn(n_k, hkv, d, generator=gen)
    kmin, kmax = tt.key_block_summary(k, bs)
    nb = -(-n_k // bs)
    kb = torch.nn.functional.pad(k, (0, 0, 0, 0, 0, nb * bs - n_k), value=float("nan")).reshape(nb, bs, hkv, d)
    assert torch.equal(kmin, kb.nan_to_num(math.inf).amin(1)) and torch.equal(kmax, kb.nan_to_num(-math.inf).amax(1))
    ids, offs = tt.quest_select_blocks(q, kmin, kmax, 5, keep_first=1, keep_last=1)
    assert ids.numel() == hq * 5 and offs.tolist() == [5 * i for i in range(hq + 1)]
    out = tt.attention(q, k, v, block_ids=ids, block_offsets=offs, block_size=bs, query_block_size=1,
                       block_lists="per_q_head")
    visible = torch.zeros(hq, 1, n_k, dtype=torch.bool)
    for h in range(hq):
        assert 0 in ids[5 * h:5 * h + 5].tolist() and nb - 1 in ids[5 * h:5 * h + 5].tolist()
        for b in ids[5 * h:5 * h + 5].tolist():
            visible[h, 0, b * bs:(b + 1) * bs] = True
    ref, _, _ = sdpa_ref(q, k, v, visible)
    assert (out.double() - ref).abs().max() <= bound(q, k, v, visible[0], torch.float32)
    # besides the forced first and last blocks, the chosen ones have the largest Quest
    # bounds sum_e max(q_e kmin_e, q_e kmax_e) (up to the library's rounding margin)
    for h in range(hq):
        qh = q[0, h]
        bnd = torch.maximum(qh * kmin[:, h // 2], qh * kmax[:, h // 2]).sum(-1)
        chosen = set(ids[5 * h:5 * h + 5].tolist()) - {0, nb - 1}
        others = set(range(1, nb - 1)) - chosen
        assert min(bnd[list(chosen)]) >= max(bnd[list(others)]) - 1e-4


def test_attention_merge_equals_one_call(gen):
    q = torch.randn(3, 4, 16, generator=gen)
    k = torch.randn(90, 4, 16, generator=gen)
    v = torch.randn(90, 4, 16, generator=gen)
    parts = [torch.arange(0, 40), torch.arange(40, 90)]
    outs, lses = zip(*[tt.attention(q, k, v, indices=p, return_lse=True)[:2] for p in parts])
    merged, mlse = tt.attention_merge(torch.stack(outs), torch.stack(lses))
    whole, wlse, _ = tt.attention(q, k, v, return_lse=True)
    assert merged.shape == whole.shape
    assert torch.allclose(merged, whole, atol=1e-6) and torch.allclose(mlse, wlse, atol=1e-5)


def test_attention_fused_qkv_views_batch_and_threads(gen):
    B, n, h, d = 2, 300, 4, 64
    qkv = torch.randn(B, n, 3, h, d, generator=gen)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # token stride 3*h*d: no copy
    one = tt.attention(q, k, v, causal=True, threads=1)
    many = tt.attention(q, k, v, causal=True, threads=3)
    assert torch.equal(one, many)  # the split never changes a bit
    for b in range(B):
        assert torch.equal(one[b], tt.attention(q[b].contiguous(), k[b].contiguous(), v[b].contiguous(),
                                                causal=True, threads=1))
    # head-major views ([heads, seq, dim] transposed), as transformers' caches are
    kh = k[0].transpose(0, 1).contiguous().transpose(0, 1)
    assert torch.equal(tt.attention(q[0], kh, v[0], causal=True), one[0])


def test_attention_runs_on_the_pool_bit_identical_for_every_thread_count(gen):
    # Decode-shaped calls (few rows per KV head over >= 1024 keys) split into key chunks:
    # the split is fixed by the call's shape, so 1, 2, 3 and 7 threads agree bit for bit,
    # batched or not, and the thread's own cap is back after each call.
    q = torch.randn(3, 40, 2, 64, generator=gen)  # 80 rows per KV head: no split-K
    k = torch.randn(3, 2048, 1, 64, generator=gen)
    v = torch.randn(3, 2048, 1, 64, generator=gen)
    dq, dk, dv = q[:, -1:], k, v
    before = tokenroute.get_num_threads()
    tokenroute.set_thread_num_threads(5)
    try:
        ref = tt.attention(q, k, v, return_lse=True, threads=1)
        dref = tt.attention(dq, dk, dv, return_lse=True, threads=1)
        for t in (2, 3, 7):
            for a, b in zip(tt.attention(q, k, v, return_lse=True, threads=t)[:2], ref[:2]):
                assert torch.equal(a, b)
            for a, b in zip(tt.attention(dq, dk, dv, return_lse=True, threads=t)[:2], dref[:2]):
                assert torch.equal(a, b)
            assert tokenroute.get_num_threads() >= t  # grown to the request
            assert threads_mod.get_thread_num_threads() == 5
        for b in range(3):  # each batch element is a separate call
            one = tt.attention(dq[b], dk[b], dv[b], threads=3)
            assert torch.equal(one, dref[0][b])
    finally:
        tokenroute.set_thread_num_threads(None)
        tokenroute.set_num_threads(before)
    assert threads_mod.get_thread_num_threads() == 0


@pytest.mark.parametrize("per_head", [False, True])
def test_attention_batch_is_one_call_equal_to_per_element_calls(gen, monkeypatch, per_head):
    # Evenly spaced batch views (k shared by expand: batch stride 0) go to the library as
    # one batched call, with lse and mass; each element equals its own call bit for bit.
    used = []
    real = tt._batch_call
    monkeypatch.setattr(tt, "_batch_call", lambda *a: used.append(real(*a)) or used[-1])
    B, n_q, hq, hkv, d, n_k = 3, 5, 4, 2, 16, 40
    q = torch.randn(B, n_q, hq, d, generator=gen)
    k = torch.randn(1, n_k, hkv, d, generator=gen).expand(B, n_k, hkv, d)
    v = torch.randn(B, n_k, hkv, d, generator=gen)
    idx = torch.tensor([0, 3, 4, 9, 17, 39])
    for keys in ({}, {"indices": idx}):
        out, lse, mass = tt.attention(q, k, v, return_lse=True, return_mass=True, mass_per_head=per_head,
                                      threads=2, **keys)
        assert used[-1] is not None and used[-1][0].k_batch_stride == 0
        for b in range(B):
            o1, l1, m1 = tt.attention(q[b], k[b], v[b], return_lse=True, return_mass=True,
                                      mass_per_head=per_head, threads=1, **keys)
            assert torch.equal(out[b], o1) and torch.equal(lse[b], l1) and torch.equal(mass[b], m1)


@pytest.mark.parametrize("level", tokenroute.supported_isas())
def test_attention_bit_identical_across_levels(gen, level):
    q = torch.randn(5, 4, 32, generator=gen).to(torch.bfloat16)
    k = torch.randn(70, 2, 32, generator=gen).to(torch.bfloat16)
    v = torch.randn(70, 2, 32, generator=gen).to(torch.bfloat16)
    before = tokenroute.get_isa()
    try:
        tokenroute.set_isa(level)
        out = tt.attention(q, k, v, causal=True)
        tokenroute.set_isa("scalar")
        ref = tt.attention(q, k, v, causal=True)
    finally:
        tokenroute.set_isa(before)
    assert torch.equal(out.view(torch.int16), ref.view(torch.int16))


# --- torch.compile, opcheck, autograd ------------------------------------------------


def test_torch_compile_fullgraph(gen):
    torch._dynamo.reset()

    def f(s, h, y, q, k, v):
        _, idx = tt.topk(s, 8, sorted=False)
        rows = tt.gather_rows(h, idx)
        h2 = h.clone()
        tt.scatter_add_rows(h2, idx, y * rows)
        out = tt.attention(q, k, v, indices=idx, causal=True)
        return h2, out + 1

    s = torch.rand(64, generator=gen)
    h = torch.randn(64, 16, generator=gen)
    y = torch.randn(8, 16, generator=gen)
    q = torch.randn(3, 4, 16, generator=gen)
    k = torch.randn(64, 2, 16, generator=gen)
    v = torch.randn(64, 2, 16, generator=gen)
    want = f(s, h, y, q, k, v)
    got = torch.compile(f, fullgraph=True, backend="aot_eager")(s, h, y, q, k, v)
    assert torch.equal(want[0], got[0]) and torch.equal(want[1], got[1])
    g = torch.compile(lambda x: tt.threshold(x, 0.5)[0].sum(), fullgraph=True, backend="aot_eager")
    assert int(g(s)) == int((s > 0.5).nonzero().sum())


def test_opcheck(gen):
    from torch.library import opcheck

    s = torch.rand(2, 100, generator=gen)
    h = torch.randn(20, 8, generator=gen)
    idx = torch.tensor([3, 1, 7])
    q = torch.randn(2, 2, 8, generator=gen)
    k = torch.randn(10, 1, 8, generator=gen)
    tests = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    ops = torch.ops.tokenroute
    opcheck(ops.topk.default, (s, 5), test_utils=tests)
    opcheck(ops.gather_rows.default, (h, idx), test_utils=tests)
    opcheck(ops.scatter_add_rows.default, (h.clone(), idx, torch.randn(3, 8, generator=gen)), test_utils=tests)
    opcheck(ops.scatter_rows.default, (h.clone(), idx, torch.randn(3, 8, generator=gen)), test_utils=tests)
    opcheck(ops.attention.default, (q, k, k.clone()), {"causal": True, "return_lse": True}, test_utils=tests)
    opcheck(ops.key_block_summary.default, (k, 4), test_utils=tests)
    opcheck(ops.route.default, (h, torch.randn(8, generator=gen)), {"k": 4}, test_utils=tests)


def test_gather_rows_backward_equals_index_select(gen):
    src = torch.randn(10, 4, generator=gen, requires_grad=True)
    idx = torch.tensor([1, 1, 7, 0])
    g = torch.randn(4, 4, generator=gen)
    tt.gather_rows(src, idx).backward(g)
    ours = src.grad.clone()
    src.grad = None
    torch.index_select(src, 0, idx).backward(g)
    assert torch.equal(ours, src.grad)


def test_inference_only_ops_refuse_grad(gen):
    q = torch.randn(2, 2, 8, generator=gen, requires_grad=True)
    k = torch.randn(5, 2, 8, generator=gen)
    with pytest.raises(RuntimeError, match="inference-only"):
        tt.attention(q, k, k)
    with pytest.raises(RuntimeError, match="inference-only"):
        tt.topk(torch.rand(9, requires_grad=True), 2)
    h = torch.zeros(4, 8)
    with pytest.raises(RuntimeError, match="inference-only"):
        tt.scatter_add_rows(h, torch.tensor([1]), torch.ones(1, 8, requires_grad=True))
    with torch.no_grad():
        tt.attention(q, k, k)


# --- bad input -----------------------------------------------------------------------


def test_bad_input_clear_errors(gen):
    q = torch.randn(4, 4, 8, generator=gen)
    k = torch.randn(9, 2, 8, generator=gen)
    with pytest.raises(ValueError, match="device meta"):
        tt._topk_op(torch.rand(5, device="meta"), 2)  # the implementation's own device check
    with pytest.raises(ValueError, match="torch.float64"):
        tt.topk(torch.rand(5, dtype=torch.float64), 2)
    with pytest.raises(ValueError, match="torch.int32"):
        tt.attention(q.int(), k.int(), k.int())
    with pytest.raises(ValueError, match="same shape"):
        tt.attention(q, k, k[:5])
    with pytest.raises(ValueError, match="head_dim"):
        tt.attention(q, k[..., :4], k[..., :4])
    with pytest.raises(ValueError, match="multiple"):
        tt.attention(q, torch.randn(9, 3, 8), torch.randn(9, 3, 8))
    # zero strides (expand) and an inner stride: refused, named, unless copy=True
    ke = torch.randn(9, 1, 8, generator=gen).expand(9, 2, 8)
    with pytest.raises(ValueError, match=r"k \(shape \(9, 2, 8\).*copy=True"):
        tt.attention(q, ke, k)
    assert torch.equal(tt.attention(q, ke, k, copy=True), tt.attention(q, ke.contiguous(), k))
    src = torch.randn(8, 10, generator=gen).t()
    with pytest.raises(ValueError, match="src .*copy=True"):
        tt.gather_rows(src, torch.tensor([1]))
    assert torch.equal(tt.gather_rows(src, torch.tensor([1, 2]), copy=True), src[[1, 2]])
    with pytest.raises(ValueError, match="scores"):
        tt.topk(torch.rand(10, 10).t(), 2)
    with pytest.raises(ValueError, match="OUT_OF_RANGE"):
        tt.gather_rows(torch.rand(4, 2), torch.tensor([4]))
    with pytest.raises(ValueError, match="OUT_OF_RANGE"):
        tt.gather_rows(torch.rand(4, 2), torch.tensor([2**32 + 1]))
    with pytest.raises(ValueError, match="OUT_OF_RANGE"):
        tt.gather_rows(torch.rand(4, 2), torch.tensor([-1]))


def test_errors_write_nothing(gen):
    q = torch.randn(4, 4, 8, generator=gen)
    k = torch.randn(9, 2, 8, generator=gen)
    out = torch.full((4, 4, 8), 5.0)
    with pytest.raises(ValueError, match="OUT_OF_RANGE"):
        tt.attention(q, k, k, indices=torch.tensor([0, 9]), out=out)
    assert (out == 5).all()
    dst = torch.full((6, 3), 2.0)
    with pytest.raises(ValueError, match="DUPLICATE"):
        tt.scatter_rows(dst, torch.tensor([1, 1]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="DUPLICATE"):
        tt.scatter_add_rows(dst, torch.tensor([2, 2]), torch.zeros(2, 3))
    assert (dst == 2).all()
    # a large split call (threads) with an out-of-range index: nothing written either
    big_q = torch.randn(400, 4, 64, generator=gen)
    big_k = torch.randn(800, 2, 64, generator=gen)
    bo = torch.full((400, 4, 64), 7.0)
    with pytest.raises(ValueError, match="OUT_OF_RANGE"):
        tt.attention(big_q, big_k, big_k, indices=torch.tensor([1, 800]), out=bo, threads=4)
    assert (bo == 7).all()
