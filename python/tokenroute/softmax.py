"""Row softmax with attention's numerics (``tkr_softmax``)."""

from __future__ import annotations

import ctypes
import threading
from ctypes import POINTER, c_float, c_size_t, c_uint32, c_void_p
from typing import Optional

import numpy as np

from ._arrays import (
    DTYPE_CODES,
    ELEMENT_CODES,
    F32,
    NDARRAY,
    addr,
    cptr,
    element_code,
    invalid,
    options,
    ptr_or_null,
    wptr,
)
from ._ffi import TKR_DTYPE_F32, TokenrouteError, declare


class SoftmaxOptions(ctypes.Structure):
    """``struct tkr_softmax_options`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("scale", c_float),
        ("out_dtype", c_uint32),
        ("bias", c_void_p),
        ("bias_row_stride", c_size_t),
    ]


_FN = "tkr_softmax"
_softmax = declare(
    _FN,
    c_uint32,
    [c_uint32, c_void_p, c_size_t, c_size_t, c_size_t, c_void_p, c_void_p, c_size_t],
)
_options_init = declare("tkr_softmax_options_init", c_uint32, [POINTER(SoftmaxOptions)])

_TLS = threading.local()


def _thread_options():
    """This thread's options struct and its address, reused by every call with options
    (set field by field before each call; no other thread touches it)."""
    try:
        return _TLS.opts
    except AttributeError:
        o = options(SoftmaxOptions)
        _TLS.opts = v = (o, ctypes.addressof(o))
        return v


def _out_np_dtype(ocode: int, x_dtype: np.dtype) -> np.dtype:
    """The numpy dtype of the output: the input's own for the input's code (so uint16
    bit patterns stay uint16), float32, or the 16-bit type by name."""
    if ocode == TKR_DTYPE_F32:
        return F32
    if ELEMENT_CODES.get(x_dtype) == ocode or x_dtype == np.uint16:
        return x_dtype
    for dt, c in ELEMENT_CODES.items():
        if c == ocode:
            return dt
    return np.dtype(np.uint16)  # bf16 without ml_dtypes: bit patterns


def softmax(
    x,
    axis: int = -1,
    scale: Optional[float] = None,
    bias=None,
    out_dtype: Optional[str] = None,
    out: Optional[np.ndarray] = None,
    dtype: Optional[str] = None,
) -> np.ndarray:
    """Softmax along ``axis``: ``exp(t - max t) / sum exp(t - max t)`` with the logits
    ``t = scale * x + bias`` (``tkr_softmax``).

    ``x``: float32, float16 or ``ml_dtypes.bfloat16`` (or uint16 bit patterns with
    ``dtype="f16"`` / ``"bf16"``) of any shape; rows along the last axis are passed in
    place (C-contiguous arrays, or 2-D arrays with strided rows), other axes and layouts
    are computed on a copy. ``scale``: a finite float (default 1; negative: a softmin).
    ``bias``: float32 values broadcastable to ``x`` (a ``[n]`` vector is passed as one
    row shared by every row, without a copy); ``-inf`` masks an element.
    ``out_dtype``: ``"f32"``, ``"f16"``, ``"bf16"`` or None (the input dtype).
    ``out``: an array of ``x``'s shape and the output dtype, C-contiguous, or ``x``
    itself (in place, same dtype); allocated when not given. Returns ``out``.

    Numerics are attention's (bit-identical on every ISA level and thread count; equal to
    the attention probabilities of a query whose scores are the row); within
    ``2^-19 (2 + A + n/256)`` relative (A the largest ``|scale x| + |bias|`` of the row)
    plus the output rounding. A row of all ``-inf`` gives zeros; a NaN or ``+inf`` logit
    makes its row NaN.
    """
    if (
        dtype is None and axis == -1 and type(x) is NDARRAY and bias is None and x.ndim
        and (scale is None or type(scale) is float or type(scale) is int)
    ):
        code = ELEMENT_CODES.get(x.dtype)
        xp = cptr(x)
        if code and xp:
            n = x.shape[-1]
            rows = x.size // n if n else 0
            if scale is None and out_dtype is None:
                ocode, op = 0, 0
                odt = x.dtype
            else:
                ocode = DTYPE_CODES.get(out_dtype, -1) if out_dtype is not None else code
                odt = None if ocode == -1 else _out_np_dtype(ocode, x.dtype)
                op = 0
            if odt is not None:
                if out is None:
                    out = np.empty(x.shape, odt)
                    op = addr(out)
                elif type(out) is NDARRAY and out.dtype is odt and out.shape == x.shape:
                    op = wptr(out)
                if op:
                    if ocode:
                        o, optr = _thread_options()
                        o.scale = 0.0 if scale is None else scale
                        o.out_dtype = ocode
                        o.bias = None
                        o.bias_row_stride = 0
                    else:
                        optr = None
                    st = _softmax(code, xp, rows, n, n, optr, op, n)
                    if st:
                        raise TokenrouteError(st, _FN)
                    return out
    return _softmax_general(x, axis, scale, bias, out_dtype, out, dtype)


def _rows(a: np.ndarray):
    """(array kept alive, rows, n, row stride in elements) of ``a`` as rows along its
    last axis without a copy when its layout allows (C-contiguous, or 2-D with rows of
    contiguous elements at a non-negative stride of at least a row), else of a copy."""
    n = a.shape[-1]
    rows = a.size // n if n else 0
    item = a.itemsize
    if a.flags.aligned:
        if a.flags.c_contiguous:
            return a, rows, n, n
        if a.ndim == 2 and (n <= 1 or a.strides[1] == item) and a.strides[0] >= 0:
            s0 = a.strides[0]
            if s0 % item == 0 and (rows <= 1 or s0 // item >= n):
                return a, rows, n, (s0 // item if rows > 1 else n)
    a = np.ascontiguousarray(a)
    return a, rows, n, n


def _softmax_general(x, axis, scale, bias, out_dtype, out, dtype) -> np.ndarray:
    """:func:`softmax` for every input the fast path does not take."""
    fn = _FN
    if not isinstance(x, np.ndarray):
        raise invalid(fn, "x must be a numpy array")
    if x.ndim == 0:
        raise invalid(fn, "x must have at least one axis")
    code = element_code(x, dtype, fn, "x")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise invalid(fn, f"axis must be an integer in [-{x.ndim}, {x.ndim}), got {axis!r}")
    axis = int(axis) % x.ndim
    if out_dtype is not None and out_dtype not in DTYPE_CODES:
        raise invalid(fn, f"out_dtype must be one of {sorted(DTYPE_CODES)}, not {out_dtype!r}")
    ocode = code if out_dtype is None else DTYPE_CODES[out_dtype]
    odt = _out_np_dtype(ocode, x.dtype)
    if scale is not None:
        if isinstance(scale, (bool, str)) or not isinstance(scale, (int, float, np.number)):
            raise invalid(fn, f"scale must be a number, got {scale!r}")
        scale = float(scale)
        if not np.isfinite(scale):
            raise invalid(fn, f"scale must be finite, got {scale}")
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise invalid(fn, "out must be a numpy array")
        if out.dtype != odt:
            raise invalid(fn, f"out must be {odt}, got {out.dtype}")
        if out.shape != x.shape:
            raise invalid(fn, f"out must have shape {x.shape}, got {out.shape}")
        if not out.flags.writeable:
            raise invalid(fn, "out is read-only")
    last = axis == x.ndim - 1
    xm = x if last else np.moveaxis(x, axis, -1)
    in_place = out is x and last and x.flags.c_contiguous and x.flags.aligned
    xa, rows, n, xs = _rows(xm)
    if bias is not None:
        b = np.asarray(bias, dtype=np.float32)
        try:
            fits = b.ndim <= x.ndim and np.broadcast_shapes(b.shape, x.shape) == x.shape
        except ValueError:
            fits = False
        if not fits:
            raise invalid(fn, f"bias of shape {b.shape} does not broadcast to x's shape {x.shape}")
        if b.ndim <= 1 and (last or b.ndim == 0 or b.shape[0] == 1):
            # One row for every row of x: shared, not copied.
            bias_arr = np.ascontiguousarray(np.broadcast_to(b.reshape(-1), (n,)), dtype=np.float32)
            bias_stride = 0
        else:
            bb = np.broadcast_to(b.reshape((1,) * (x.ndim - b.ndim) + b.shape), x.shape)
            if not last:
                bb = np.moveaxis(bb, axis, -1)
            bias_arr = np.ascontiguousarray(bb, dtype=np.float32).reshape(-1)
            bias_stride = n
    else:
        bias_arr, bias_stride = None, 0
    # The output rows: the caller's (C-contiguous, last axis) or a fresh buffer.
    direct = out is not None and last and out.flags.c_contiguous and out.flags.aligned
    if in_place:
        res, op, os_ = out, ptr_or_null(xa), xs
    elif direct:
        res, op, os_ = out, ptr_or_null(out), n  # any overlap with x: OVERLAP
    else:
        res = np.empty(xm.shape, odt)
        op, os_ = ptr_or_null(res), n
    opts = options(SoftmaxOptions)
    opts.scale = 0.0 if scale is None else scale
    opts.out_dtype = ocode
    if bias_arr is not None and rows and n:
        opts.bias = addr(bias_arr)
        opts.bias_row_stride = bias_stride
    xp = ptr_or_null(xa) if rows and n else None
    if not (rows and n):
        op = None
    st = _softmax(code, xp, rows, n, xs, ctypes.addressof(opts), op, os_)
    if st:
        raise TokenrouteError(st, fn)
    del xa, bias_arr
    if in_place or direct:
        return out
    if not last:
        res = np.moveaxis(res, -1, axis)
    if out is not None:
        out[...] = res
        return out
    return res
