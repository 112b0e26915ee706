"""Router scoring: the elementwise sigmoid and fused ``act(H W^T + b)``."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ._arrays import (
    ELEMENT_CODES,
    F32,
    NDARRAY,
    addr,
    cptr,
    element_code,
    input_matrix,
    input_vector,
    invalid,
    output_column,
    output_matrix,
    output_vector,
    slots,
    wptr,
)
from ._ffi import TokenrouteError, c_size_t, c_uint32, c_void_p, check, constant, declare

TKR_ACT_NONE = constant("TKR_ACT_NONE", 0)
TKR_ACT_SIGMOID = constant("TKR_ACT_SIGMOID", 1)

_sigmoid_f32 = declare("tkr_sigmoid_f32", c_uint32, [c_void_p, c_size_t, c_void_p])
_score = declare(
    "tkr_score",
    c_uint32,
    [
        c_uint32,  # dtype
        c_void_p,  # h
        c_size_t,  # n_tokens
        c_size_t,  # d
        c_size_t,  # h_row_stride
        c_void_p,  # w
        c_size_t,  # n_routers
        c_size_t,  # w_row_stride
        c_void_p,  # bias
        c_uint32,  # activation
        c_void_p,  # scores
        c_size_t,  # scores_row_stride
    ],
)

ACTIVATIONS = {"sigmoid": TKR_ACT_SIGMOID, "none": TKR_ACT_NONE}


def sigmoid(x, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Elementwise logistic sigmoid of a float32 array of any shape (at most 2 ulp from
    the correctly rounded result, bit-identical on every ISA level).

    ``x``: a float32 array (anything else that is not an ndarray is converted to
    float32; an ndarray of another dtype is refused). A non-contiguous ``x`` is copied.
    ``out``: a C-contiguous float32 array of ``x``'s shape, or ``x`` itself (in place);
    allocated when not given. Returns ``out``.
    """
    if type(x) is NDARRAY and x.dtype is F32:
        xp = cptr(x)
        if xp:
            if out is None:
                out = np.empty(x.shape, F32)
                op = addr(out)
            else:
                op = wptr(out) if type(out) is NDARRAY and out.dtype is F32 and out.shape == x.shape else 0
            if op:
                st = _sigmoid_f32(xp, x.size, op)
                if st:
                    raise TokenrouteError(st, "tkr_sigmoid_f32")
                return out
    return _sigmoid(x, out)


def _sigmoid(x, out):
    """:func:`sigmoid` for every input the fast path does not take."""
    fn = "tkr_sigmoid_f32"
    if not isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=np.float32)
    if x.dtype != np.float32:
        raise invalid(fn, f"x must be float32, got {x.dtype}")
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    if out is x and x.flags.c_contiguous and x.flags.aligned:
        xp = out_p = output_vector(out, fn, "out", x.shape, np.float32)
    else:
        out_p = output_vector(out, fn, "out", x.shape, np.float32)
        x, xp = input_vector(x.reshape(-1), fn, "x", x.size, np.float32)
    check(_sigmoid_f32(xp, x.size, out_p), fn)
    return out


def score(
    h,
    w,
    bias=None,
    activation: str = "sigmoid",
    out: Optional[np.ndarray] = None,
    dtype: Optional[str] = None,
) -> np.ndarray:
    """Fused router scores ``out[i, e] = act(h[i] . w[e] + bias[e])``.

    ``h``: ``[n, d]`` tokens; ``w``: ``[E, d]`` routers, or ``[d]`` for one router (the
    output is then ``[n]``). Both float32, float16 or ``ml_dtypes.bfloat16`` of the same
    type, or uint16 bit patterns with ``dtype="f16"`` / ``"bf16"``. Rows may be strided
    (any row stride of at least a row, e.g. ``h[:, :d]`` of a wider array, ``h[::2]``);
    other layouts are copied first. ``bias``: ``E`` float32 values or None.
    ``activation``: ``"sigmoid"`` or ``"none"`` (the raw logit). ``out``: float32
    ``[n, E]`` (``[n]`` for a 1-D ``w``) with rows of contiguous elements, allocated
    when not given. Scores are bit-identical on every ISA level. Returns ``out``.
    """
    if dtype is None and type(h) is NDARRAY and type(w) is NDARRAY and h.dtype is w.dtype and h.ndim == 2:
        code = ELEMENT_CODES.get(h.dtype)
        act = ACTIVATIONS.get(activation)
        hp, wp = cptr(h), cptr(w)
        n, d = h.shape
        one = w.ndim == 1
        e, dw = (1, len(w)) if one else w.shape if w.ndim == 2 else (0, -1)
        bp = -1  # stays -1 when the bias is not one the fast path takes
        if bias is None:
            bp = None
        elif type(bias) is NDARRAY:
            if bias.dtype is F32 and bias.ndim == 1 and len(bias) == e:
                bp = cptr(bias) or -1
        elif one and type(bias) in (float, int):
            _, _, slot, bp = slots()
            slot.value = bias
        if code and act is not None and hp and wp and dw == d and bp != -1:
            if out is None:
                out = np.empty(n if one else (n, e), F32)
                op = addr(out)
            elif type(out) is NDARRAY and out.dtype is F32 and out.shape == ((n,) if one else (n, e)):
                op = wptr(out)
            else:
                op = 0
            if op:
                st = _score(code, hp, n, d, d, wp, e, d, bp, act, op, e)
                if st:
                    raise TokenrouteError(st, "tkr_score")
                return out
    return _score_general(h, w, bias, activation, out, dtype)


def _score_general(h, w, bias, activation, out, dtype) -> np.ndarray:
    """:func:`score` for every input the fast path does not take."""
    fn = "tkr_score"
    if activation not in ACTIVATIONS:
        raise invalid(fn, f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    if not isinstance(h, np.ndarray) or not isinstance(w, np.ndarray):
        raise invalid(fn, "h and w must be numpy arrays")
    code = element_code(h, dtype, fn, "h")
    if element_code(w, dtype, fn, "w") != code or h.dtype != w.dtype:
        raise invalid(fn, f"h and w must have the same element type ({h.dtype} vs {w.dtype})")
    one_router = w.ndim == 1
    w2 = w.reshape(1, -1) if one_router else w
    h, hp, n, d, hs = input_matrix(h, fn, "h")
    w2, wp, e, dw, ws = input_matrix(w2, fn, "w")
    if dw != d:
        raise invalid(fn, f"h rows have {d} elements but w rows have {dw}")
    bp = None
    if bias is not None:
        if not isinstance(bias, np.ndarray):
            bias = np.asarray(bias, dtype=np.float32)
        if one_router and bias.ndim == 0:
            bias = bias.reshape(1)
        bias, bp = input_vector(bias, fn, "bias", e, np.float32)
        if bp is None:  # E == 0: an empty bias is passed as NULL (no bias)
            bias = None
    if out is None:
        out = np.empty((n,) if one_router else (n, e), dtype=np.float32)
    if one_router:
        op, os_ = output_column(out, fn, "out", n, np.float32)
    else:
        op, os_ = output_matrix(out, fn, "out", n, e, np.float32)
    status = _score(code, hp, n, d, hs, wp, e, ws, bp, ACTIVATIONS[activation], op, os_)
    check(status, fn)
    return out
