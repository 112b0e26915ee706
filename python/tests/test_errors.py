"""Error paths of the C API driven through the raw ctypes functions (tokenroute.lib()),
as a ctypes caller that skips the numpy wrappers would: each status reaches Python as
the documented code and nothing is written on error."""

import ctypes

import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError, _ffi

lib = tokenroute.lib()
F32, F16, BF16 = _ffi.TKR_DTYPE_F32, _ffi.TKR_DTYPE_F16, _ffi.TKR_DTYPE_BF16
SIG, NONE = _ffi.CONSTANTS["TKR_ACT_SIGMOID"], _ffi.CONSTANTS["TKR_ACT_NONE"]
SIZE_MAX = ctypes.c_size_t(-1).value


def p(a):
    return a.ctypes.data


def test_error_carries_the_status_name():
    e = TokenrouteError(_ffi.TKR_STATUS_SIZE_OVERFLOW, "tkr_score", "why")
    assert e.status == 8 and e.name == "TKR_STATUS_SIZE_OVERFLOW"
    assert "tkr_score" in str(e) and "why" in str(e)
    assert isinstance(e, ValueError)
    assert TokenrouteError(1234, "f").name == "TKR_STATUS_UNKNOWN"


def test_sigmoid_statuses():
    x = np.arange(8, dtype=np.float32)
    y = np.full(8, 5.0, np.float32)
    assert lib.tkr_sigmoid_f32(None, 0, None) == _ffi.TKR_STATUS_OK
    assert lib.tkr_sigmoid_f32(None, 3, p(y)) == _ffi.TKR_STATUS_NULL_POINTER
    assert lib.tkr_sigmoid_f32(p(x), 3, None) == _ffi.TKR_STATUS_NULL_POINTER
    assert lib.tkr_sigmoid_f32(p(x), 4, p(x) + 4) == _ffi.TKR_STATUS_OVERLAP
    assert lib.tkr_sigmoid_f32(p(x), 4, p(y) + 1) == _ffi.TKR_STATUS_INVALID_ARGUMENT
    assert lib.tkr_sigmoid_f32(p(x), SIZE_MAX // 2, p(y)) == _ffi.TKR_STATUS_SIZE_OVERFLOW
    assert np.all(y == 5.0) and np.array_equal(x, np.arange(8, dtype=np.float32))


def test_score_statuses():
    h = np.ones((4, 8), np.float32)
    w = np.ones((2, 8), np.float32)
    bb = np.full(20, 5.0, np.float32)
    bb[12:14] = 0.0
    b = bb[12:14]  # the bias sits inside a larger buffer
    out = np.full((4, 2), 5.0, np.float32)

    def call(dtype=F32, hp=p(h), n=4, d=8, hs=8, wp=p(w), e=2, ws=8, bp=p(b), act=SIG,
             op=p(out), os_=2):
        return lib.tkr_score(dtype, hp, n, d, hs, wp, e, ws, bp, act, op, os_)

    assert call() == _ffi.TKR_STATUS_OK
    out[:] = 5.0
    cases = {
        "NULL_POINTER": [dict(hp=None), dict(wp=None), dict(op=None)],
        "INVALID_ARGUMENT": [dict(dtype=0), dict(dtype=4), dict(act=2), dict(e=0),
                             dict(op=p(out) + 2), dict(hp=p(h) + 2)],
        "BAD_STRIDE": [dict(hs=7), dict(ws=0), dict(os_=1)],
        "SIZE_OVERFLOW": [dict(n=SIZE_MAX, hs=SIZE_MAX), dict(n=2**62, hs=8)],
        "OVERLAP": [dict(op=p(h)), dict(op=p(w) + 4), dict(op=p(bb) + 4 * 6)],
    }
    for name, kws in cases.items():
        for kw in kws:
            st = call(**kw)
            assert tokenroute.status_string(st) == "TKR_STATUS_" + name, (kw, st)
            assert np.all(out == 5.0), kw
            assert np.all(bb[:12] == 5.0) and np.all(bb[12:14] == 0.0), kw
    # f16 and bf16 take uint16 data at 2-byte alignment.
    h16 = np.ones((4, 8), np.uint16)
    w16 = np.ones((2, 8), np.uint16)
    for dt in (F16, BF16):
        assert call(dtype=dt, hp=p(h16), wp=p(w16)) == _ffi.TKR_STATUS_OK
        assert call(dtype=dt, hp=p(h16) + 1, wp=p(w16)) == _ffi.TKR_STATUS_INVALID_ARGUMENT


def test_isa_statuses():
    before = lib.tkr_get_isa()
    assert lib.tkr_set_isa(1000) == _ffi.TKR_STATUS_INVALID_ARGUMENT
    missing = [i for i in (2, 3, 4) if not lib.tkr_supported_isas() & (1 << i)]
    for i in missing:
        assert lib.tkr_set_isa(i) == _ffi.TKR_STATUS_ISA_UNAVAILABLE
    assert lib.tkr_get_isa() == before


def test_check_raises_with_the_function_name():
    with pytest.raises(TokenrouteError) as e:
        _ffi.check(_ffi.TKR_STATUS_BAD_STRIDE, "tkr_score")
    assert e.value.function == "tkr_score" and e.value.name == "TKR_STATUS_BAD_STRIDE"
    _ffi.check(_ffi.TKR_STATUS_OK, "tkr_score")
