"""Token compaction: gather, scatter, gated scatter-add, in-place compaction of rows and
of KV caches.

Row copies (gather, scatter, compact, kv_compact) move rows bit for bit, so they take
numpy arrays of any element type (the element size is the array's itemsize); the
gated scatter-add computes in f32 and takes float32, float16 or bfloat16 rows (or uint16
bit patterns with ``dtype=``). 1-D arrays are rows of one element. Arrays holding
Python objects are refused (their references cannot be copied bit for bit).

Index lists are uint32 (what the selection calls return); other integer arrays are
range-checked and converted first. Each call has a fast path for C-contiguous uint32
indices and C-contiguous rows.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_size_t, c_uint32, c_void_p
from typing import Optional

import numpy as np

from ._arrays import (
    ELEMENT_CODES,
    F32,
    NDARRAY,
    U32,
    addr,
    cptr,
    element_code,
    input_matrix,
    input_vector,
    invalid,
    output_matrix,
    ptr_or_null,
    wptr,
)
from ._ffi import (
    TKR_STATUS_BAD_STRIDE,
    TKR_STATUS_OUT_OF_RANGE,
    TokenrouteError,
    check,
    constant,
    declare,
)

TKR_KV_TOKEN_MAJOR = constant("TKR_KV_TOKEN_MAJOR", 1)
TKR_KV_HEAD_MAJOR = constant("TKR_KV_HEAD_MAJOR", 2)
TKR_KV_KEEP_SHARED = constant("TKR_KV_KEEP_SHARED", 0)
TKR_KV_KEEP_PER_HEAD = constant("TKR_KV_KEEP_PER_HEAD", 1)

_gather = declare(
    "tkr_gather_rows",
    c_uint32,
    [c_size_t, c_size_t, c_void_p, c_size_t, c_size_t, c_void_p, c_size_t, c_void_p, c_size_t],
)
_scatter = declare(
    "tkr_scatter_rows",
    c_uint32,
    [c_size_t, c_size_t, c_void_p, c_size_t, c_void_p, c_size_t, c_void_p, c_size_t, c_size_t],
)
_scatter_add = declare(
    "tkr_scatter_add_rows",
    c_uint32,
    [c_uint32, c_size_t, c_void_p, c_size_t, c_size_t, c_void_p, c_size_t, c_void_p, c_size_t,
     c_void_p],
)
_compact = declare(
    "tkr_compact_rows",
    c_uint32,
    [c_size_t, c_size_t, c_void_p, c_size_t, c_size_t, c_void_p, c_size_t, POINTER(c_size_t)],
)
_kv_compact = declare(
    "tkr_kv_compact",
    c_uint32,
    [c_uint32, c_size_t, c_void_p, c_size_t, c_size_t, c_size_t, c_size_t, c_size_t, c_void_p,
     c_size_t, c_uint32, POINTER(c_size_t)],
)


def _indices(idx, fn: str, name: str = "idx") -> np.ndarray:
    """A C-contiguous uint32 copy (or view) of an integer index list; negative or too
    large values are TKR_STATUS_OUT_OF_RANGE before any call."""
    a = np.asarray(idx)
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise invalid(fn, f"{name} must hold integers, got {a.dtype}")
    if a.size and a.dtype != np.uint32 and (a.min() < 0 or a.max() > 0xFFFFFFFF):
        raise TokenrouteError(TKR_STATUS_OUT_OF_RANGE, fn, f"{name} holds a value outside [0, 2^32)")
    return np.ascontiguousarray(a, dtype=np.uint32)


def _rows(a, fn: str, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise invalid(fn, f"{name} must be a numpy array")
    if a.dtype.hasobject:
        raise invalid(fn, f"{name} holds Python objects ({a.dtype}), which cannot be moved bit for bit")
    if a.ndim == 1:
        return a.reshape(-1, 1)
    if a.ndim != 2:
        raise invalid(fn, f"{name} must be 1-D or 2-D, got shape {a.shape}")
    return a


def _row_output(out: np.ndarray, fn: str, name: str, rows: int, cols: int, dtype) -> tuple:
    """(2-D view, pointer, row stride) of a caller's output (1-D accepted as one column)."""
    if not isinstance(out, np.ndarray):
        raise invalid(fn, f"{name} must be a numpy array")
    if out.dtype.hasobject:
        raise invalid(fn, f"{name} holds Python objects ({out.dtype}), which cannot be moved bit for bit")
    o2 = out.reshape(-1, 1) if out.ndim == 1 else out
    if out.ndim == 1 and out.size > 1 and out.strides[0] != out.itemsize:
        raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, f"{name} must be contiguous")
    p, s = output_matrix(o2, fn, name, rows, cols, dtype)
    return o2, p, s


def gather_rows(src, idx, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``out[j] = src[idx[j]]`` (rows copied bit for bit).

    ``src``: ``[n, row_len]`` (or ``[n]``) of any element type, rows may be strided.
    ``idx``: integer indices, each ``< n``, any order, repeats allowed.
    ``out``: ``[len(idx), row_len]`` (``[len(idx)]`` for 1-D ``src``) of ``src``'s
    dtype, rows of contiguous elements, not overlapping ``src``; allocated when not
    given. Returns ``out``.
    """
    nd = src.ndim if type(src) is NDARRAY else 0
    if (nd == 1 or nd == 2) and type(idx) is NDARRAY and idx.dtype is U32 and idx.ndim == 1:
        dt = src.dtype
        sp, ip = cptr(src), cptr(idx)
        if sp and ip and not dt.hasobject:
            n, cols = (len(src), 1) if nd == 1 else src.shape
            m = len(idx)
            if out is None:
                out = np.empty(m if nd == 1 else (m, cols), dt)
                op = addr(out)
            elif type(out) is NDARRAY and out.dtype is dt and out.shape == ((m,) if nd == 1 else (m, cols)):
                op = wptr(out)
            else:
                op = 0
            if op:
                st = _gather(dt.itemsize, cols, sp, n, cols, ip, m, op, cols)
                if st:
                    raise TokenrouteError(st, "tkr_gather_rows")
                return out
    return _gather_general(src, idx, out)


def _gather_general(src, idx, out):
    fn = "tkr_gather_rows"
    one = isinstance(src, np.ndarray) and src.ndim == 1
    s2 = _rows(src, fn, "src")
    s2, sp, n, cols, ss = input_matrix(s2, fn, "src")
    ix = _indices(idx, fn)
    if out is None:
        out = np.empty((ix.size,) if one else (ix.size, cols), dtype=s2.dtype)
    _, op, os_ = _row_output(out, fn, "out", ix.size, cols, s2.dtype)
    check(_gather(s2.itemsize, cols, sp, n, ss, ptr_or_null(ix), ix.size, op, os_), fn)
    return out


def scatter_rows(src, idx, dst: np.ndarray) -> np.ndarray:
    """``dst[idx[j]] = src[j]`` in place (rows copied bit for bit); other rows of
    ``dst`` keep their contents. ``idx``: distinct indices, each ``< len(dst)``, any
    order. ``src``: ``[len(idx), row_len]`` of ``dst``'s dtype. Returns ``dst``."""
    nd = src.ndim if type(src) is NDARRAY else 0
    if (
        (nd == 1 or nd == 2) and type(dst) is NDARRAY and type(idx) is NDARRAY
        and idx.dtype is U32 and idx.ndim == 1 and src.dtype is dst.dtype and nd == dst.ndim
    ):
        sp, ip, dp = cptr(src), cptr(idx), wptr(dst)
        m, cols = (len(src), 1) if nd == 1 else src.shape
        n, dcols = (len(dst), 1) if nd == 1 else dst.shape
        if sp and ip and dp and m == len(idx) and cols == dcols and not src.dtype.hasobject:
            st = _scatter(src.itemsize, cols, sp, cols, ip, m, dp, n, cols)
            if st:
                raise TokenrouteError(st, "tkr_scatter_rows")
            return dst
    return _scatter_general(src, idx, dst)


def _scatter_general(src, idx, dst):
    fn = "tkr_scatter_rows"
    if not isinstance(dst, np.ndarray):
        raise invalid(fn, "dst must be a numpy array")
    s2 = _rows(src, fn, "src")
    if s2.dtype != dst.dtype:
        raise invalid(fn, f"src is {s2.dtype} but dst is {dst.dtype}")
    s2, sp, m, cols, ss = input_matrix(s2, fn, "src")
    ix = _indices(idx, fn)
    if m != ix.size:
        raise invalid(fn, f"src has {m} rows but idx has {ix.size} entries")
    n_dst = dst.shape[0] if dst.ndim >= 1 else 0
    _, dp, ds = _row_output(dst, fn, "dst", n_dst, cols, dst.dtype)
    check(_scatter(s2.itemsize, cols, sp, ss, ptr_or_null(ix), ix.size, dp, n_dst, ds), fn)
    return dst


def scatter_add_rows(
    h: np.ndarray, idx, y, gate=None, dtype: Optional[str] = None
) -> np.ndarray:
    """Gated residual scatter-add in place: ``h[idx[j]] += gate[j] * y[j]`` (or
    ``+= y[j]`` without a gate), f32 arithmetic (product, then sum, each rounded to
    f32), rounded to ``h``'s type; bit-identical on every ISA level.

    ``h``: ``[n, d]`` float32 / float16 / bfloat16 (or uint16 with ``dtype``), rows of
    contiguous elements. ``idx``: distinct indices ``< n``. ``y``: ``[len(idx), d]`` of
    ``h``'s type. ``gate``: ``len(idx)`` float32 values or None. Returns ``h``.
    """
    if (
        dtype is None and type(h) is NDARRAY and type(y) is NDARRAY and type(idx) is NDARRAY
        and h.dtype is y.dtype and idx.dtype is U32 and idx.ndim == 1 and h.ndim == 2
    ):
        code = ELEMENT_CODES.get(h.dtype)
        hp, yp, ip = wptr(h), cptr(y), cptr(idx)
        n, d = h.shape
        m = len(idx)
        if gate is None:
            gp = None
        elif type(gate) is NDARRAY and gate.dtype is F32 and gate.ndim == 1 and len(gate) == m:
            gp = cptr(gate) or -1
        else:
            gp = -1
        if code and hp and yp and ip and gp != -1 and y.shape == (m, d):
            st = _scatter_add(code, d, hp, n, d, ip, m, yp, d, gp)
            if st:
                raise TokenrouteError(st, "tkr_scatter_add_rows")
            return h
    return _scatter_add_general(h, idx, y, gate, dtype)


def _scatter_add_general(h, idx, y, gate, dtype):
    fn = "tkr_scatter_add_rows"
    if not isinstance(h, np.ndarray) or not isinstance(y, np.ndarray):
        raise invalid(fn, "h and y must be numpy arrays")
    code = element_code(h, dtype, fn, "h")
    if element_code(y, dtype, fn, "y") != code or y.dtype != h.dtype:
        raise invalid(fn, f"h and y must have the same element type ({h.dtype} vs {y.dtype})")
    if h.ndim != 2:
        raise invalid(fn, f"h must be 2-D, got shape {h.shape}")
    n, d = h.shape
    ix = _indices(idx, fn)
    y2, yp, m, dy, ys = input_matrix(y.reshape(-1, d) if y.ndim == 1 and d else y, fn, "y")
    if m != ix.size or dy != d:
        raise invalid(fn, f"y must have shape {(ix.size, d)}, got {y.shape}")
    gp, g = None, None
    if gate is not None:
        g = gate if isinstance(gate, np.ndarray) else np.asarray(gate, dtype=np.float32)
        g, gp = input_vector(g, fn, "gate", ix.size, np.float32)
    hp, hs = output_matrix(h, fn, "h", n, d, h.dtype)
    check(_scatter_add(code, d, hp, n, hs, ptr_or_null(ix), ix.size, yp, ys, gp), fn)
    return h


def compact_rows(data: np.ndarray, keep) -> int:
    """Stable in-place compaction: rows ``keep[0], keep[1], ...`` of ``data`` move to
    rows ``0, 1, ...``; returns ``len(keep)`` (the new row count; use
    ``data[:count]``). ``keep``: strictly ascending indices ``< len(data)``
    (TKR_STATUS_UNSORTED_INDEX / TKR_STATUS_DUPLICATE_INDEX otherwise). ``data``: 1-D or
    2-D of any element type, rows of contiguous elements, writeable."""
    nd = data.ndim if type(data) is NDARRAY else 0
    if (nd == 1 or nd == 2) and type(keep) is NDARRAY and keep.dtype is U32 and keep.ndim == 1:
        dp, kp = wptr(data), cptr(keep)
        if dp and kp and not data.dtype.hasobject:
            n, cols = (len(data), 1) if nd == 1 else data.shape
            m = len(keep)
            st = _compact(data.itemsize, cols, dp, n, cols, kp, m, None)
            if st:
                raise TokenrouteError(st, "tkr_compact_rows")
            return m
    return _compact_general(data, keep)


def _compact_general(data, keep) -> int:
    fn = "tkr_compact_rows"
    if not isinstance(data, np.ndarray):
        raise invalid(fn, "data must be a numpy array")
    if data.dtype.hasobject:
        raise invalid(fn, f"data holds Python objects ({data.dtype}), which cannot be moved bit for bit")
    d2 = data.reshape(-1, 1) if data.ndim == 1 else data
    if data.ndim == 1 and data.size > 1 and data.strides[0] != data.itemsize:
        raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, "data must be contiguous")
    if d2.ndim != 2:
        raise invalid(fn, f"data must be 1-D or 2-D, got shape {data.shape}")
    n, cols = d2.shape
    dp, ds = output_matrix(d2, fn, "data", n, cols, d2.dtype)
    ix = _indices(keep, fn, "keep")
    count = c_size_t()
    check(_compact(d2.itemsize, cols, dp, n, ds, ptr_or_null(ix), ix.size, ctypes.byref(count)), fn)
    return int(count.value)


def kv_compact(cache: np.ndarray, keep, layout: str = "token_major", per_head: bool = False) -> int:
    """KV-cache compaction in place (call once for K, once for V): keeps the tokens in
    ``keep`` (strictly ascending, ``< n_tokens``), moved to positions ``0, 1, ...`` of
    every head; returns the new token count.

    ``cache``: 3-D, ``[n_tokens, n_heads, head_dim]`` (``layout="token_major"``) or
    ``[n_heads, n_tokens, head_dim]`` (``"head_major"``), any element type, unit inner
    stride and non-negative strides (views of a larger capacity buffer are fine).
    ``keep``: one list for every head, or ``[n_heads, n_keep]`` with ``per_head=True``.
    """
    lay = _LAYOUTS.get(layout) if type(layout) is str else None
    if (
        lay is not None and type(cache) is NDARRAY and type(keep) is NDARRAY
        and keep.dtype is U32 and cache.ndim == 3 and keep.ndim == (2 if per_head else 1)
        and cache.size and wptr(cache) and cptr(keep) and not cache.dtype.hasobject
    ):
        a, b, hd = cache.shape
        n_tokens, n_heads = (a, b) if lay == TKR_KV_TOKEN_MAJOR else (b, a)
        # C order: token-major [t, h, d] rows at t * h * d + h * d; head-major [h, t, d]
        # at h * t * d + t * d.
        ts, hs = (n_heads * hd, hd) if lay == TKR_KV_TOKEN_MAJOR else (hd, n_tokens * hd)
        n_keep = keep.shape[-1]
        if not per_head or len(keep) == n_heads:
            st = _kv_compact(
                lay, cache.itemsize, addr(cache), n_tokens, n_heads, hd, ts, hs, addr(keep),
                n_keep, TKR_KV_KEEP_PER_HEAD if per_head else TKR_KV_KEEP_SHARED, None,
            )
            if st:
                raise TokenrouteError(st, "tkr_kv_compact")
            return n_keep
    return _kv_compact_general(cache, keep, layout, per_head)


_LAYOUTS = {"token_major": TKR_KV_TOKEN_MAJOR, "head_major": TKR_KV_HEAD_MAJOR}


def _kv_compact_general(cache, keep, layout, per_head) -> int:
    fn = "tkr_kv_compact"
    layouts = _LAYOUTS
    if layout not in layouts:
        raise invalid(fn, f"layout must be one of {sorted(layouts)}, not {layout!r}")
    if not isinstance(cache, np.ndarray) or cache.ndim != 3:
        raise invalid(fn, "cache must be a 3-D numpy array")
    if cache.dtype.hasobject:
        raise invalid(fn, f"cache holds Python objects ({cache.dtype}), which cannot be moved bit for bit")
    if not cache.flags.writeable:
        raise invalid(fn, "cache is read-only")
    item = cache.itemsize
    strides = cache.strides
    if cache.size == 0:  # numpy may give empty arrays zero strides: use C order's
        a, b, c = cache.shape
        strides = (b * c * item, c * item, item)
    if cache.size and (
        cache.shape[2] > 1 and cache.strides[2] != item
        or any(s < 0 or s % item for s in cache.strides[:2])
    ):
        raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, f"unsupported strides {cache.strides}")
    if cache.size and not cache.flags.aligned:
        raise invalid(fn, "cache is not aligned")
    if layout == "token_major":
        n_tokens, n_heads, hd = cache.shape
        ts, hs = strides[0] // item, strides[1] // item
    else:
        n_heads, n_tokens, hd = cache.shape
        hs, ts = strides[0] // item, strides[1] // item
    # Strides of length-1 axes are arbitrary in numpy: give the C API the minimal one.
    if n_heads <= 1:
        hs = hd if layout == "token_major" else max(n_tokens, 1) * max(ts, hd)
    if n_tokens <= 1:
        ts = max(n_heads, 1) * max(hs, hd) if layout == "token_major" else hd
    k = np.asarray(keep)
    if per_head:
        if k.ndim != 2 or k.shape[0] != n_heads:
            raise invalid(fn, f"keep must have shape (n_heads={n_heads}, n_keep), got {k.shape}")
        n_keep = k.shape[1]
    else:
        if k.ndim != 1:
            raise invalid(fn, f"keep must be 1-D, got shape {k.shape}")
        n_keep = k.shape[0]
    ix = _indices(k, fn, "keep")
    mode = TKR_KV_KEEP_PER_HEAD if per_head else TKR_KV_KEEP_SHARED
    count = c_size_t()
    st = _kv_compact(
        layouts[layout], item, ptr_or_null(cache), n_tokens, n_heads, hd, ts, hs, ptr_or_null(ix), n_keep,
        mode, ctypes.byref(count),
    )
    check(st, fn)
    return int(count.value)
