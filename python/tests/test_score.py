"""tokenroute.sigmoid and tokenroute.score against numpy references: dtypes (f32, f16,
bf16 as ml_dtypes.bfloat16 and as uint16 views), strided and non-contiguous views,
empty arrays, special values, error paths, and bit-identity across ISA levels."""

import math

import ml_dtypes
import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError

BF16 = ml_dtypes.bfloat16


def ulp32(x):
    """The f32 ulp at |x| (as float64), with the subnormal spacing as the floor."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    x32 = np.maximum(x, np.float64(np.finfo(np.float32).tiny)).astype(np.float32)
    return (np.nextafter(x32, np.float32(np.inf)) - x32).astype(np.float64)


def sigmoid64(x):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def canon(a):
    """The bits of a float32 array with every NaN made 0x7fc00000: the levels agree bit
    for bit except on the sign and payload of a NaN result, which are unspecified."""
    a = np.asarray(a, dtype=np.float32)
    return np.where(np.isnan(a), np.uint32(0x7FC00000), a.view(np.uint32))


def assert_sigmoid_close(y, x):
    exact = sigmoid64(x)
    err = np.abs(y.astype(np.float64) - exact)
    bad = err > 2.41 * ulp32(exact)
    assert not bad.any(), f"x={x[bad][:5]} y={y[bad][:5]} exact={exact[bad][:5]}"


# ---------------------------------------------------------------- sigmoid


@pytest.mark.parametrize("n", [0, 1, 2, 7, 15, 16, 17, 63, 64, 65, 1000])
def test_sigmoid_lengths(rng, n):
    x = (rng.standard_normal(n) * 8).astype(np.float32)
    y = tokenroute.sigmoid(x)
    assert y.shape == (n,) and y.dtype == np.float32
    assert_sigmoid_close(y, x)


def test_sigmoid_special_values():
    tiny = np.finfo(np.float32).tiny
    x = np.array(
        [np.inf, -np.inf, np.nan, 0.0, -0.0, tiny, -tiny, 1e-45, -1e-45, 88.0, -88.0,
         -87.0, -103.0, -104.0, 17.0, 16.6355, -200.0, 200.0],
        dtype=np.float32,
    )
    y = tokenroute.sigmoid(x)
    assert y[0] == 1.0 and y[1] == 0.0 and np.isnan(y[2])
    assert y[3] == 0.5 and y[4] == 0.5
    fin = np.isfinite(x)
    assert_sigmoid_close(y[fin], x[fin])
    # Subnormal results are rounded, not flushed: sigmoid(-100) ~ 3.7e-44 > 0.
    assert tokenroute.sigmoid(np.array([-100.0], np.float32))[0] > 0


def test_sigmoid_any_shape_out_and_in_place(rng):
    x = (rng.standard_normal((3, 4, 5)) * 4).astype(np.float32)
    y = tokenroute.sigmoid(x)
    assert y.shape == x.shape
    out = np.full_like(x, 7.0)
    r = tokenroute.sigmoid(x, out=out)
    assert r is out
    assert np.array_equal(out.view(np.uint32), y.view(np.uint32))
    z = x.copy()
    assert tokenroute.sigmoid(z, out=z) is z
    assert np.array_equal(z.view(np.uint32), y.view(np.uint32))


def test_sigmoid_non_contiguous_input(rng):
    base = (rng.standard_normal((40, 6)) * 5).astype(np.float32)
    for view in (base[::3], base[:, 1::2], base.T, base[::-1]):
        y = tokenroute.sigmoid(view)
        assert y.flags.c_contiguous
        want = tokenroute.sigmoid(np.ascontiguousarray(view))
        assert np.array_equal(y.view(np.uint32), want.view(np.uint32))


def test_sigmoid_empty_and_lists():
    assert tokenroute.sigmoid(np.zeros(0, np.float32)).shape == (0,)
    assert tokenroute.sigmoid(np.zeros((0, 5), np.float32)).shape == (0, 5)
    y = tokenroute.sigmoid([0.0, 1.0])
    assert y.dtype == np.float32 and y[0] == 0.5


def test_sigmoid_errors():
    x = np.ones(8, np.float32)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.sigmoid(x.astype(np.float64))
    assert e.value.name == "TKR_STATUS_INVALID_ARGUMENT"
    with pytest.raises(TokenrouteError, match="shape"):
        tokenroute.sigmoid(x, out=np.empty(7, np.float32))
    with pytest.raises(TokenrouteError, match="float32"):
        tokenroute.sigmoid(x, out=np.empty(8, np.float64))
    ro = np.empty(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(TokenrouteError, match="read-only"):
        tokenroute.sigmoid(x, out=ro)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.sigmoid(x, out=np.empty(16, np.float32)[::2])
    assert e.value.name == "TKR_STATUS_BAD_STRIDE"
    # A partial overlap reaches the library, which refuses it and writes nothing.
    buf = np.arange(9, dtype=np.float32)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.sigmoid(buf[:8], out=buf[1:])
    assert e.value.name == "TKR_STATUS_OVERLAP" and e.value.status == 10
    assert np.array_equal(buf, np.arange(9, dtype=np.float32))
    # A misaligned output (a float32 view at an odd byte offset).
    raw = np.zeros(8 * 4 + 1, np.uint8)
    mis = np.frombuffer(raw.data, dtype=np.float32, count=8, offset=1)
    assert not mis.flags.aligned and mis.flags.writeable
    with pytest.raises(TokenrouteError, match="aligned"):
        tokenroute.sigmoid(x, out=mis)
    assert not raw.any()
    # A misaligned input is copied, then computed.
    mis[:] = np.arange(8, dtype=np.float32)
    assert np.array_equal(tokenroute.sigmoid(mis), tokenroute.sigmoid(np.arange(8, dtype=np.float32)))


def test_sigmoid_bit_identical_on_every_level(rng, each_level):
    x = np.concatenate([
        (rng.standard_normal(1000) * 20).astype(np.float32),
        rng.integers(0, 2**32, 1000, dtype=np.uint64).astype(np.uint32).view(np.float32),
    ])
    res = each_level(lambda: canon(tokenroute.sigmoid(x)))
    ref = res.pop("scalar")
    for level, y in res.items():
        assert np.array_equal(y, ref), level


# ---------------------------------------------------------------- score


def to_dtype(a, name):
    """(array of the element type, its float64 values)."""
    if name == "f32":
        a = a.astype(np.float32)
    elif name == "f16":
        a = a.astype(np.float16)
    elif name in ("bf16", "bf16-u16"):
        a = a.astype(BF16)
    return a, a.astype(np.float64)


def as_kernel_input(a, name):
    """The array as passed to tokenroute.score, with its dtype= argument."""
    if name == "bf16-u16":
        return a.view(np.uint16), "bf16"
    if name == "f16-u16":
        return a.view(np.uint16), "f16"
    return a, None


def score_bound(h64, w64, b64, d):
    """The documented logit error bound per (token, router)."""
    mag = np.abs(h64) @ np.abs(w64).T + np.abs(b64)[None, :]
    return (math.ceil(d / 16) + 5) * 2.0**-24 * mag


def check_scores(out, h64, w64, b64, activation):
    logit = h64 @ w64.T + b64[None, :]
    bound = score_bound(h64, w64, b64, h64.shape[1])
    out64 = out.astype(np.float64)
    if activation == "none":
        assert np.all(np.abs(out64 - logit) <= bound + 1e-300)
    else:
        exact = sigmoid64(logit)
        # sigmoid is 1/4-Lipschitz; the vector sigmoid adds at most 2.41 ulp.
        tol = 0.25 * bound + 2.41 * ulp32(np.abs(exact) + 0.25 * bound)
        assert np.all(np.abs(out64 - exact) <= tol)


DTYPES = ["f32", "f16", "bf16", "bf16-u16", "f16-u16"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,d,e", [(1, 1, 1), (5, 16, 1), (13, 33, 3), (40, 100, 8), (9, 257, 5)])
@pytest.mark.parametrize("activation", ["sigmoid", "none"])
def test_score_against_numpy(rng, dtype, n, d, e, activation):
    base = "f16" if dtype == "f16-u16" else dtype
    h, h64 = to_dtype(rng.standard_normal((n, d)), base)
    w, w64 = to_dtype(rng.standard_normal((e, d)) * 0.3, base)
    b = rng.standard_normal(e).astype(np.float32)
    hin, dt = as_kernel_input(h, dtype)
    win, _ = as_kernel_input(w, dtype)
    out = tokenroute.score(hin, win, b, activation=activation, dtype=dt)
    assert out.shape == (n, e) and out.dtype == np.float32
    check_scores(out, h64, w64, b.astype(np.float64), activation)
    # No bias is a zero bias.
    nob = tokenroute.score(hin, win, activation=activation, dtype=dt)
    zero = tokenroute.score(hin, win, np.zeros(e, np.float32), activation=activation, dtype=dt)
    assert np.array_equal(nob.view(np.uint32), zero.view(np.uint32))


def test_score_one_router_vector(rng):
    h = rng.standard_normal((11, 24)).astype(np.float32)
    w = rng.standard_normal(24).astype(np.float32)
    s = tokenroute.score(h, w, 0.25)
    assert s.shape == (11,)
    s2 = tokenroute.score(h, w[None, :], np.array([0.25], np.float32))
    assert np.array_equal(s.view(np.uint32), s2[:, 0].view(np.uint32))
    # A strided 1-D output: only every other float is written.
    out = np.full(22, -7.0, np.float32)
    tokenroute.score(h, w, 0.25, out=out[::2])
    assert np.array_equal(out[::2].view(np.uint32), s.view(np.uint32))
    assert np.all(out[1::2] == -7.0)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.score(h, w, 0.25, out=out[::-2])
    assert e.value.name == "TKR_STATUS_BAD_STRIDE"


def test_score_strided_and_non_contiguous_views(rng):
    n, d, e = 12, 40, 4
    big = rng.standard_normal((2 * n, d + 9)).astype(np.float32)
    wbig = rng.standard_normal((e, d + 3)).astype(np.float32)
    b = rng.standard_normal(e).astype(np.float32)
    ref = lambda h, w: tokenroute.score(np.ascontiguousarray(h), np.ascontiguousarray(w), b)
    views = [
        (big[:n, :d], wbig[:, :d]),  # row stride > d, no copy
        (big[::2, :d], wbig[:, 3:]),  # every other row, offset start
        (big[:n, 1 : 2 * d : 2][:, :d // 2], wbig[:, : d // 2]),  # inner stride 2: copied
        (np.asfortranarray(big[:n, :d]), np.asfortranarray(wbig[:, :d])),  # column-major
        (big[n - 1 :: -1, :d][:n], wbig[::-1, :d]),  # negative row stride: copied
    ]
    for h, w in views:
        got = tokenroute.score(h, w, b)
        assert np.array_equal(got.view(np.uint32), ref(h, w).view(np.uint32))
    # A strided output: a column block of a wider array; the gaps stay untouched.
    outbig = np.full((n, e + 5), np.float32(-3.5))
    h, w = big[:n, :d], wbig[:, :d]
    r = tokenroute.score(h, w, b, out=outbig[:, 2 : 2 + e])
    assert r.base is outbig or r.base is outbig.base
    assert np.array_equal(outbig[:, 2 : 2 + e].view(np.uint32), ref(h, w).view(np.uint32))
    assert np.all(outbig[:, :2] == -3.5) and np.all(outbig[:, 2 + e :] == -3.5)
    # Every other output row.
    out2 = np.full((2 * n, e), np.float32(9.0))
    tokenroute.score(h, w, b, out=out2[::2])
    assert np.array_equal(out2[::2].view(np.uint32), ref(h, w).view(np.uint32))
    assert np.all(out2[1::2] == 9.0)
    # Broadcast (zero-stride) rows are copied, then scored.
    hb = np.broadcast_to(h[0], (n, d))
    got = tokenroute.score(hb, w, b)
    assert np.all(got == got[0])


def test_score_empty_arrays(rng):
    w = rng.standard_normal((3, 8)).astype(np.float32)
    out = tokenroute.score(np.zeros((0, 8), np.float32), w)
    assert out.shape == (0, 3)
    out = tokenroute.score(np.zeros((0, 8), np.float32), np.zeros((0, 8), np.float32))
    assert out.shape == (0, 0)
    # d = 0: the logit is the bias.
    b = np.array([0.0, 2.0, -1.0], np.float32)
    s = tokenroute.score(np.zeros((4, 0), np.float32), np.zeros((3, 0), np.float32), b,
                         activation="none")
    assert np.array_equal(s, np.tile(b, (4, 1)))


def test_score_special_values():
    h = np.array([[np.nan, 1.0], [np.inf, 1.0], [-np.inf, 1.0], [1e-45, 1e-45]], np.float32)
    w = np.array([[1.0, 1.0]], np.float32)
    s = tokenroute.score(h, w, activation="none")[:, 0]
    assert np.isnan(s[0]) and s[0].view(np.uint32) == 0x7FC00000
    assert s[1] == np.inf and s[2] == -np.inf
    assert s[3] == np.float32(2e-45) or s[3] == np.float32(1e-45) * 2
    sig = tokenroute.score(h, w)[:, 0]
    assert np.isnan(sig[0]) and sig[1] == 1.0 and sig[2] == 0.0


def test_score_rows_are_independent(rng):
    """A token's score does not depend on the batch: scoring row by row gives the same
    bits as one call."""
    h = rng.standard_normal((37, 70)).astype(BF16)
    w = (rng.standard_normal((5, 70)) * 0.1).astype(BF16)
    whole = tokenroute.score(h, w)
    for i in range(0, 37, 6):
        part = tokenroute.score(h[i : i + 6], w)
        assert np.array_equal(part.view(np.uint32), whole[i : i + 6].view(np.uint32))


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_score_bit_identical_on_every_level(rng, each_level, dtype):
    h, _ = to_dtype(rng.standard_normal((29, 131)), dtype)
    w, _ = to_dtype(rng.standard_normal((6, 131)), dtype)
    b = rng.standard_normal(6).astype(np.float32)
    res = each_level(lambda: tokenroute.score(h, w, b).view(np.uint32).copy())
    ref = res.pop("scalar")
    for level, s in res.items():
        assert np.array_equal(s, ref), level


def test_score_errors(rng):
    h = rng.standard_normal((4, 8)).astype(np.float32)
    w = rng.standard_normal((2, 8)).astype(np.float32)

    def status(**kw):
        args = dict(h=h, w=w)
        args.update(kw)
        with pytest.raises(TokenrouteError) as e:
            tokenroute.score(**args)
        return e.value.name

    assert status(w=w[:, :7]) == "TKR_STATUS_INVALID_ARGUMENT"  # d mismatch
    assert status(w=w.astype(np.float16)) == "TKR_STATUS_INVALID_ARGUMENT"  # mixed types
    assert status(h=h.astype(np.float64), w=w.astype(np.float64)) == "TKR_STATUS_INVALID_ARGUMENT"
    u = h.astype(BF16).view(np.uint16)
    assert status(h=u, w=w.astype(BF16).view(np.uint16)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(h=h.astype(BF16), w=w.astype(BF16), dtype="f16") == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(dtype="f64") == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(h=h[0]) == "TKR_STATUS_INVALID_ARGUMENT"  # 1-D h
    assert status(activation="relu") == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(bias=np.zeros(3, np.float32)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(bias=np.zeros(2, np.float64)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(out=np.empty((4, 3), np.float32)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(out=np.empty((4, 2), np.float64)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(out=np.empty((2, 4), np.float32).T) == "TKR_STATUS_BAD_STRIDE"
    assert status(out=[[0.0, 0.0]] * 4) == "TKR_STATUS_INVALID_ARGUMENT"
    # E = 0 routers for a non-empty batch: refused by the library itself.
    e = status(w=np.zeros((0, 8), np.float32))
    assert e == "TKR_STATUS_INVALID_ARGUMENT"
    # An output inside h: the library reports the overlap and writes nothing.
    hh = h.copy()
    with pytest.raises(TokenrouteError) as err:
        tokenroute.score(hh, w, out=hh[:, :2])
    assert err.value.name == "TKR_STATUS_OVERLAP" and err.value.function == "tkr_score"
    assert np.array_equal(hh, h)
