"""Compaction family through the Python package: gather, scatter, gated scatter-add,
in-place row and KV-cache compaction, against numpy references."""

import ml_dtypes
import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError


def status(f):
    with pytest.raises(TokenrouteError) as e:
        f()
    return e.value.name


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.uint8, np.float64])
@pytest.mark.parametrize("n,cols", [(0, 3), (1, 1), (7, 5), (33, 17)])
def test_gather_rows(rng, dtype, n, cols):
    src = rng.standard_normal((n, cols)).astype(dtype)
    idx = rng.integers(0, n, size=2 * n) if n else np.zeros(0, np.int64)
    out = tokenroute.gather_rows(src, idx)
    assert out.dtype == src.dtype and out.shape == (idx.size, cols)
    assert np.array_equal(out.view(np.uint8), src[idx].view(np.uint8))


def test_gather_strided_views_and_out(rng):
    big = rng.standard_normal((40, 24)).astype(np.float32)
    src = big[::2, 3:19]  # row stride 48, 16 columns
    idx = np.array([19, 0, 5, 5, 7])
    out_big = np.full((5, 20), -1.0, np.float32)
    out = out_big[:, :16]
    r = tokenroute.gather_rows(src, idx, out=out)
    assert r is out
    assert np.array_equal(out, src[idx])
    assert np.all(out_big[:, 16:] == -1.0)
    # A column view (inner stride != 1) is copied first: still correct.
    col = big[:, ::2]
    assert np.array_equal(tokenroute.gather_rows(col, idx), col[idx])
    # 1-D arrays are rows of one element.
    v = np.arange(10, dtype=np.int32)[::3]
    assert np.array_equal(tokenroute.gather_rows(v, [3, 1, 0]), v[[3, 1, 0]])


def test_gather_errors(rng):
    src = rng.standard_normal((6, 4)).astype(np.float32)
    assert status(lambda: tokenroute.gather_rows(src, [6])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.gather_rows(src, [-1])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.gather_rows(src, [0.5])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.gather_rows(src, [1], out=np.zeros((2, 4), np.float32))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.gather_rows(src, [1, 2], out=np.zeros((2, 8), np.float32)[:, ::2])) == "TKR_STATUS_BAD_STRIDE"
    assert status(lambda: tokenroute.gather_rows(src, [1], out=np.zeros((1, 4), np.float64))) == "TKR_STATUS_INVALID_ARGUMENT"
    ro = np.zeros((1, 4), np.float32)
    ro.flags.writeable = False
    assert status(lambda: tokenroute.gather_rows(src, [1], out=ro)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.gather_rows(src.reshape(2, 3, 4), [1])) == "TKR_STATUS_INVALID_ARGUMENT"
    # The output overlapping the input is refused by the library.
    buf = np.zeros((8, 4), np.float32)
    assert status(lambda: tokenroute.gather_rows(buf[:4], [0, 1], out=buf[2:4])) == "TKR_STATUS_OVERLAP"


@pytest.mark.parametrize("n", [0, 1, 9, 64])
def test_scatter_rows(rng, n):
    dst = rng.standard_normal((n, 6)).astype(np.float16)
    idx = rng.permutation(n)[: n // 2]
    src = rng.standard_normal((idx.size, 6)).astype(np.float16)
    want = dst.copy()
    want[idx] = src
    assert tokenroute.scatter_rows(src, idx, dst) is dst
    assert np.array_equal(dst.view(np.uint16), want.view(np.uint16))


def test_scatter_rows_strided_and_errors(rng):
    big = np.zeros((10, 8), np.float32)
    dst = big[:, :5]
    src = rng.standard_normal((3, 10)).astype(np.float32)[:, ::2]  # copied first
    tokenroute.scatter_rows(src, [9, 0, 4], dst)
    assert np.array_equal(big[[9, 0, 4], :5], src) and not big[:, 5:].any()
    assert status(lambda: tokenroute.scatter_rows(src, [1, 1, 2], dst)) == "TKR_STATUS_DUPLICATE_INDEX"
    assert status(lambda: tokenroute.scatter_rows(src, [1, 10, 2], dst)) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.scatter_rows(src, [1, 2], dst)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.scatter_rows(src.astype(np.float64), [1, 2, 3], dst)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.scatter_rows(src, [1, 2, 3], np.zeros((10, 10), np.float32)[:, ::2])) == "TKR_STATUS_BAD_STRIDE"


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
@pytest.mark.parametrize("gated", [False, True])
def test_scatter_add_rows(rng, dtype, gated):
    npdt = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}[dtype]
    n, d = 37, 19
    h = rng.standard_normal((n, d)).astype(npdt)
    idx = rng.permutation(n)[:20]
    y = rng.standard_normal((20, d)).astype(npdt)
    gate = rng.random(20).astype(np.float32) if gated else None
    want = h.astype(np.float32)
    delta = y.astype(np.float32) * (gate[:, None] if gated else np.float32(1))
    want[idx] = want[idx] + delta
    want = want.astype(npdt)
    got = tokenroute.scatter_add_rows(h, idx, y, gate)
    assert got is h
    assert np.array_equal(h.astype(np.float32), want.astype(np.float32))


def test_scatter_add_uint16_views_and_strides(rng):
    h32 = rng.standard_normal((12, 8)).astype(np.float32)
    hb = h32.astype(ml_dtypes.bfloat16)
    y = rng.standard_normal((3, 8)).astype(ml_dtypes.bfloat16)
    want = hb.copy()
    tokenroute.scatter_add_rows(want, [1, 5, 7], y)
    bits = hb.view(np.uint16).copy()
    tokenroute.scatter_add_rows(bits, [1, 5, 7], y.view(np.uint16), dtype="bf16")
    assert np.array_equal(bits, want.view(np.uint16))
    big = np.zeros((12, 16), np.float32)
    h = big[:, 4:12]
    h[:] = h32
    ys = rng.standard_normal((3, 16)).astype(np.float32)[:, ::2]
    tokenroute.scatter_add_rows(h, [11, 0, 3], ys, np.float32([0.5, 1.0, 2.0]))
    ref = h32.copy()
    ref[[11, 0, 3]] += ys * np.float32([0.5, 1.0, 2.0])[:, None]
    assert np.array_equal(h, ref) and not big[:, :4].any() and not big[:, 12:].any()


def test_scatter_add_errors(rng):
    h = np.zeros((5, 4), np.float32)
    y = np.ones((2, 4), np.float32)
    assert status(lambda: tokenroute.scatter_add_rows(h, [0, 0], y)) == "TKR_STATUS_DUPLICATE_INDEX"
    assert status(lambda: tokenroute.scatter_add_rows(h, [0, 5], y)) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.scatter_add_rows(h, [0], y)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.scatter_add_rows(h, [0, 1], y, [1.0])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.scatter_add_rows(h, [0, 1], y.astype(np.float16))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.scatter_add_rows(h.view(np.uint16), [0, 1], y)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.scatter_add_rows(np.zeros((5, 8), np.float32)[:, ::2], [0, 1], y)) == "TKR_STATUS_BAD_STRIDE"
    assert not h.any()
    # Empty: nothing to do.
    tokenroute.scatter_add_rows(h, [], np.zeros((0, 4), np.float32))
    assert not h.any()


@pytest.mark.parametrize("n", [0, 1, 5, 100])
def test_compact_rows(rng, n):
    data = rng.standard_normal((n, 7)).astype(np.float32)
    keep = np.flatnonzero(rng.random(n) < 0.4)
    want = data[keep].copy()
    before = data.copy()
    c = tokenroute.compact_rows(data, keep)
    assert c == keep.size
    assert np.array_equal(data[:c], want)
    assert np.array_equal(data[c:], before[c:]) if c == 0 else True
    pos = np.arange(n, dtype=np.int64)
    assert tokenroute.compact_rows(pos, keep) == keep.size
    assert np.array_equal(pos[: keep.size], keep)


def test_compact_rows_strided_and_errors():
    big = np.arange(60, dtype=np.float32).reshape(10, 6)
    view = big[:, 1:4]
    want = view[[2, 5, 9]].copy()
    assert tokenroute.compact_rows(view, [2, 5, 9]) == 3
    assert np.array_equal(view[:3], want)
    assert big[0, 0] == 0 and big[0, 4] == 4  # columns outside the view untouched
    d = np.zeros((4, 2), np.float32)
    assert status(lambda: tokenroute.compact_rows(d, [2, 1])) == "TKR_STATUS_UNSORTED_INDEX"
    assert status(lambda: tokenroute.compact_rows(d, [1, 1])) == "TKR_STATUS_DUPLICATE_INDEX"
    assert status(lambda: tokenroute.compact_rows(d, [4])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.compact_rows(np.zeros((4, 4))[:, ::2], [0])) == "TKR_STATUS_BAD_STRIDE"
    assert status(lambda: tokenroute.compact_rows(np.zeros(8)[::2], [0])) == "TKR_STATUS_BAD_STRIDE"


@pytest.mark.parametrize("layout", ["token_major", "head_major"])
@pytest.mark.parametrize("per_head", [False, True])
def test_kv_compact(rng, layout, per_head):
    n, h, d = 23, 3, 8
    cache = rng.standard_normal((n, h, d) if layout == "token_major" else (h, n, d)).astype(np.float16)
    tok_axis = 0 if layout == "token_major" else 1
    if per_head:
        keep = np.stack([np.sort(rng.permutation(n)[:9]) for _ in range(h)])
    else:
        keep = np.sort(rng.permutation(n)[:9])
    before = cache.copy()
    assert tokenroute.kv_compact(cache, keep, layout=layout, per_head=per_head) == 9
    for g in range(h):
        kk = keep[g] if per_head else keep
        if layout == "token_major":
            assert np.array_equal(cache[:9, g], before[kk, g])
        else:
            assert np.array_equal(cache[g, :9], before[g, kk])
    del tok_axis


def test_kv_compact_capacity_view_and_errors(rng):
    buf = rng.standard_normal((2, 50, 4)).astype(np.float32)  # head-major, capacity 50
    cache = buf[:, :20]
    want = cache[:, [0, 3, 19]].copy()
    assert tokenroute.kv_compact(cache, [0, 3, 19], layout="head_major") == 3
    assert np.array_equal(buf[:, :3], want)
    c = np.zeros((6, 2, 4), np.float32)
    assert status(lambda: tokenroute.kv_compact(c, [3, 1])) == "TKR_STATUS_UNSORTED_INDEX"
    assert status(lambda: tokenroute.kv_compact(c, [6])) == "TKR_STATUS_OUT_OF_RANGE"
    assert status(lambda: tokenroute.kv_compact(c, [1], layout="bogus")) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.kv_compact(c, [[1], [2]])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.kv_compact(c, [[1, 2]], per_head=True)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.kv_compact(np.zeros((6, 2, 8), np.float32)[:, :, ::2], [1])) == "TKR_STATUS_BAD_STRIDE"
    assert status(lambda: tokenroute.kv_compact(c[0], [1])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert tokenroute.kv_compact(np.zeros((0, 2, 4), np.float32), []) == 0
