"""tokenroute.softmax against numpy float64, its options, layouts and errors."""

import ctypes
import importlib

import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError
from tokenroute._arrays import BFLOAT16, options

from test_fastpath import steady_state_peak

DTYPES = [np.dtype(np.float32), np.dtype(np.float16)] + ([BFLOAT16] if BFLOAT16 is not None else [])
OUT = {"f32": (2.0**-150, 0.0), "f16": (2.0**-25, 2.0**-11), "bf16": (2.0**-134, 2.0**-8)}
smod = importlib.import_module("tokenroute.softmax")  # the module (the package exports the function)
NAME = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", BFLOAT16: "bf16"}


def reference(x, scale=1.0, bias=None, axis=-1):
    t = np.asarray(x, np.float64) * scale
    if bias is not None:
        t = t + np.asarray(bias, np.float64)
    t = np.moveaxis(t, axis, -1)
    m = t.max(axis=-1, keepdims=True)
    e = np.exp(t - m)
    y = e / e.sum(axis=-1, keepdims=True)
    fin = np.where(np.isfinite(t), np.abs(t), 0.0)
    a = fin.max(axis=-1, keepdims=True) if t.shape[-1] else fin
    return np.moveaxis(y, -1, axis), np.moveaxis(np.broadcast_to(a, t.shape), -1, axis)


def check(got, x, scale=1.0, bias=None, axis=-1, out_name="f32"):
    if x.size == 0:
        assert got.shape == x.shape
        return
    want, a = reference(x, scale, bias, axis)
    n = x.shape[axis]
    e_out, u_out = OUT[out_name]
    bound = (2.0**-19 * (2 + a + n / 256) + u_out) * want + 2.0**-124 + e_out
    err = np.abs(np.asarray(got, np.float64) - want)
    assert np.all(err <= bound), f"worst error/bound {np.max(err / bound)}"


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: str(d))
def test_rows_against_float64(dt):
    rng = np.random.default_rng(18)
    for n in list(range(0, 34)) + [63, 64, 65, 129, 1000]:
        for rows in (1, 3):
            x = (rng.standard_normal((rows, n)) * 6).astype(dt)
            for out_dtype in (None, "f32", "f16", "bf16"):
                if out_dtype == "bf16" and BFLOAT16 is None:
                    continue
                y = tokenroute.softmax(x, out_dtype=out_dtype)
                assert y.shape == x.shape
                check(y, x.astype(np.float64), out_name=out_dtype or NAME[dt])
            y = tokenroute.softmax(x, scale=0.3)
            check(y, x.astype(np.float64), scale=0.3, out_name=NAME[dt])


def test_scale_bias_and_axes():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 5, 70)) * 4).astype(np.float32)
    b1 = rng.standard_normal(70).astype(np.float32)
    b1[3] = -np.inf
    y = tokenroute.softmax(x, scale=-0.7, bias=b1)
    check(y, x, -0.7, b1)
    assert np.all(y[..., 3] == 0)
    bfull = rng.standard_normal(x.shape).astype(np.float32)
    check(tokenroute.softmax(x, bias=bfull), x, 1.0, bfull)
    bcol = rng.standard_normal((4, 1, 70)).astype(np.float32)
    check(tokenroute.softmax(x, bias=bcol), x, 1.0, bcol)
    for axis in (0, 1, -2):
        b = rng.standard_normal(x.shape[axis]).reshape([-1 if i == axis % 3 else 1 for i in range(3)])
        b = b.astype(np.float32)
        check(tokenroute.softmax(x, axis=axis, scale=2.0, bias=b), x, 2.0, b, axis=axis)
    # A strided 2-D view is read in place; a non-contiguous 3-D one through a copy.
    w = (rng.standard_normal((6, 90)) * 3).astype(np.float32)
    check(tokenroute.softmax(w[::2, :77]), w[::2, :77])
    check(tokenroute.softmax(x[:, ::2, 1:]), x[:, ::2, 1:])


def test_fast_and_general_paths_and_levels_agree():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((9, 300)) * 10).astype(np.float32)
    fast = tokenroute.softmax(x, scale=1.5)
    general = tokenroute.softmax(x, axis=1, scale=1.5)  # axis != -1: the general path
    assert fast.tobytes() == general.tobytes()
    out = np.full_like(x, 7.0)
    assert tokenroute.softmax(x, scale=1.5, out=out) is out
    assert out.tobytes() == fast.tobytes()
    y = x.copy()
    assert tokenroute.softmax(y, scale=1.5, out=y) is y  # in place
    assert y.tobytes() == fast.tobytes()
    # Every supported level gives the same bits.
    before = tokenroute.get_isa()
    try:
        for isa in tokenroute.supported_isas():
            tokenroute.set_isa(isa)
            assert tokenroute.softmax(x, scale=1.5).tobytes() == fast.tobytes(), isa
    finally:
        tokenroute.set_isa(before)


def test_special_rows():
    x = np.array(
        [
            [-np.inf] * 5,
            [1.0, np.nan, 2.0, 3.0, 4.0],
            [1.0, np.inf, 2.0, 3.0, 4.0],
            [-np.inf, 0.0, -np.inf, 0.0, -np.inf],
        ],
        np.float32,
    )
    y = tokenroute.softmax(x)
    assert np.all(y[0].view(np.uint32) == 0)
    assert np.all(y[1].view(np.uint32) == 0x7FC00000)
    assert np.all(y[2].view(np.uint32) == 0x7FC00000)
    assert list(y[3]) == [0.0, 0.5, 0.0, 0.5, 0.0]
    h = tokenroute.softmax(x, out_dtype="f16")
    assert np.all(h[1].view(np.uint16) == 0x7E00)
    # Logits that overflow a naive exp are stable.
    big = np.array([[1000.0, 1000.0, -1000.0]], np.float32)
    assert list(tokenroute.softmax(big)[0]) == [0.5, 0.5, 0.0]


def test_bad_input_raises_and_writes_nothing():
    x = np.ones((3, 8), np.float32)
    out = np.full((3, 8), 9.0, np.float32)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.softmax(x, scale=float("nan"), out=out)
    assert e.value.name == "TKR_STATUS_INVALID_ARGUMENT"
    with pytest.raises(TokenrouteError):
        tokenroute.softmax(x, scale=float("inf"), bias=np.zeros(8, np.float32), out=out)
    with pytest.raises(TokenrouteError):
        tokenroute.softmax(x, axis=2)
    with pytest.raises(TokenrouteError):
        tokenroute.softmax(x, out_dtype="f64")
    with pytest.raises(TokenrouteError):
        tokenroute.softmax(x, bias=np.zeros(7, np.float32), out=out)
    with pytest.raises(TokenrouteError):
        tokenroute.softmax(x, out=np.empty((3, 8), np.float16))
    with pytest.raises(TokenrouteError):
        tokenroute.softmax(x.astype(np.float64))
    # Output overlapping the input without being it: OVERLAP from the library.
    buf = np.ones(40, np.float32)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.softmax(buf[:32].reshape(4, 8), out=buf[1:33].reshape(4, 8))
    assert e.value.name == "TKR_STATUS_OVERLAP"
    assert np.all(buf == 1.0)
    assert np.all(out == 9.0)
    # Empty arrays are fine.
    assert tokenroute.softmax(np.empty((0, 5), np.float32)).shape == (0, 5)
    assert tokenroute.softmax(np.empty((3, 0), np.float16)).shape == (3, 0)


def test_options_struct_matches_the_library():
    mine = options(smod.SoftmaxOptions)
    theirs = smod.SoftmaxOptions()
    assert smod._options_init(ctypes.byref(theirs)) == 0
    assert bytes(mine) == bytes(theirs)
    assert ctypes.sizeof(smod.SoftmaxOptions) == 4 * ctypes.sizeof(ctypes.c_size_t)


def test_calls_with_out_do_not_allocate_per_element():
    """With out= given, the traced peak does not grow with the input (x1 vs x16), with
    and without options; without out= the result is allocated (the check can fail)."""
    peaks = []
    for scale in (1, 16):
        x = np.random.default_rng(scale).standard_normal((8, 512 * scale)).astype(np.float32)
        y = np.empty_like(x)
        peaks.append(
            (
                steady_state_peak(lambda: tokenroute.softmax(x, out=y)),
                steady_state_peak(lambda: tokenroute.softmax(x, scale=0.5, out=y)),
                steady_state_peak(lambda: tokenroute.softmax(x, out_dtype="f32", out=y)),
            )
        )
    assert all(p16 <= p1 + 256 for p1, p16 in zip(*peaks)), peaks
    x = np.ones((8, 8192), np.float32)
    assert steady_state_peak(lambda: tokenroute.softmax(x)) >= x.nbytes
