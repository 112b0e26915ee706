"""Token selection: exact top-k and threshold selection over f32 scores (batched, with
forced keeps and valid lengths), and mask <-> index conversions."""

from __future__ import annotations

import ctypes
import math
from ctypes import POINTER, c_double, c_float, c_size_t, c_uint32, c_void_p
from typing import Optional

import numpy as np

from ._arrays import (
    BOOL,
    F32,
    NDARRAY,
    SIZE_MAX,
    U8,
    U32,
    UINTP,
    addr,
    cptr,
    exact,
    index,
    input_matrix,
    invalid,
    options,
    ptr_or_null,
    output_matrix,
    output_vector,
    slots,
    wptr,
)
from ._ffi import TKR_STATUS_OUT_OF_RANGE, TokenrouteError, check, constant, declare

TKR_TOPK_ORDER_SCORE = constant("TKR_TOPK_ORDER_SCORE", 1)
TKR_TOPK_CAPACITY = constant("TKR_TOPK_CAPACITY", 2)

#: Marks the entries of a padded index row past its count.
PAD = np.uint32(0xFFFFFFFF)


class ThresholdOptions(ctypes.Structure):
    """``struct tkr_threshold_options`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("keep_first", c_size_t),
        ("keep_last", c_size_t),
        ("keep_mask", c_void_p),
        ("keep_mask_row_stride", c_size_t),
        ("valid_lens", c_void_p),
        ("row_tau", c_void_p),
        ("out_mask", c_void_p),
        ("out_mask_row_stride", c_size_t),
    ]


class TopkOptions(ctypes.Structure):
    """``struct tkr_topk_options`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("keep_first", c_size_t),
        ("keep_last", c_size_t),
        ("keep_mask", c_void_p),
        ("keep_mask_row_stride", c_size_t),
        ("valid_lens", c_void_p),
        ("row_k", c_void_p),
        ("capacity", c_double),
        ("out_scores", c_void_p),
        ("out_scores_row_stride", c_size_t),
    ]


_threshold = declare(
    "tkr_threshold_f32",
    c_uint32,
    [c_void_p, c_size_t, c_size_t, c_size_t, c_float, POINTER(ThresholdOptions), c_void_p,
     c_size_t, c_void_p],
)
_threshold_init = declare("tkr_threshold_options_init", c_uint32, [POINTER(ThresholdOptions)])
_topk = declare(
    "tkr_topk_f32",
    c_uint32,
    [c_void_p, c_size_t, c_size_t, c_size_t, c_size_t, POINTER(TopkOptions), c_void_p,
     c_size_t, c_void_p, c_void_p, c_size_t],
)
_topk_init = declare("tkr_topk_options_init", c_uint32, [POINTER(TopkOptions)])
_ws_size = declare("tkr_topk_workspace_size", c_uint32, [c_size_t, POINTER(c_size_t)])
_mask_to_indices = declare("tkr_mask_to_indices", c_uint32, [c_void_p, c_size_t, c_void_p, c_void_p])
_indices_to_mask = declare("tkr_indices_to_mask", c_uint32, [c_void_p, c_size_t, c_void_p, c_size_t])

_TOPK = "tkr_topk_f32"
_THRESHOLD = "tkr_threshold_f32"


def _scores(scores, fn):
    """(one row?, array kept alive, pointer, batch, n, row stride) of f32 scores."""
    if type(scores) is NDARRAY and scores.dtype is F32:
        sp = cptr(scores)
        if sp and scores.ndim == 1:
            n = len(scores)
            return True, scores, sp, 1, n, n
        if sp and scores.ndim == 2:
            batch, n = scores.shape
            return False, scores, sp, batch, n, n
    if not isinstance(scores, np.ndarray):
        scores = np.asarray(scores, dtype=np.float32)
    if scores.dtype != np.float32:
        raise invalid(fn, f"scores must be float32, got {scores.dtype}")
    if scores.ndim not in (1, 2):
        raise invalid(fn, f"scores must be 1-D or 2-D, got shape {scores.shape}")
    one = scores.ndim == 1
    s2, sp, batch, n, ss = input_matrix(scores.reshape(1, -1) if one else scores, fn, "scores")
    return one, s2, sp, batch, n, ss


def _out_rows(out, fn, name, one, batch, width, dtype):
    """(pointer, row stride) of a caller's output of ``width`` entries per row: ``[width]``
    for one row of 1-D scores, else ``[batch, width]`` (rows of contiguous elements)."""
    if type(out) is NDARRAY and out.dtype is dtype and out.shape == ((width,) if one else (batch, width)):
        p = wptr(out)
        if p:
            return p, width
    if one:
        return output_vector(out, fn, name, (width,), dtype), width
    return output_matrix(out, fn, name, batch, width, dtype)


def _out_vector(out, fn, name, at_least, dtype):
    """Pointer of a caller's C-contiguous 1-D output of at least ``at_least`` entries."""
    if type(out) is NDARRAY and out.dtype is dtype and out.ndim == 1 and len(out) >= at_least:
        p = wptr(out)
        if p:
            return p
    if isinstance(out, np.ndarray) and out.dtype == dtype and (out.ndim != 1 or len(out) < at_least):
        raise invalid(fn, f"{name} must be 1-D with room for {at_least} entries, got shape {out.shape}")
    return output_vector(out, fn, name, getattr(out, "shape", ()), dtype)


def _pad_rows(rows: np.ndarray, counts: np.ndarray, value) -> None:
    """rows[r, counts[r]:] = value for every row (one vectorised pass)."""
    if rows.size:
        np.copyto(rows, value, where=np.arange(rows.shape[1], dtype=counts.dtype) >= counts[:, None])


def _keeps(opts, fn, batch, n, keep_first, keep_last, keep_mask, valid_lens, keep_alive):
    """Sets the forced keeps and valid lengths of a top-k / threshold options struct;
    returns the valid lengths (uint64) or None."""
    opts.keep_first = index(keep_first, fn, "keep_first")
    opts.keep_last = index(keep_last, fn, "keep_last")
    if keep_mask is not None:
        m = np.asarray(keep_mask)
        if m.dtype not in (np.bool_, np.uint8):
            raise invalid(fn, f"keep_mask must be bool or uint8, got {m.dtype}")
        m = m.reshape(1, -1) if m.ndim == 1 else m
        if m.shape != (batch, n):
            raise invalid(fn, f"keep_mask must have shape {(batch, n)}, got {m.shape}")
        if not (m.flags.c_contiguous and m.flags.aligned):
            m = np.ascontiguousarray(m)
        keep_alive.append(m)
        opts.keep_mask = ptr_or_null(m)
        opts.keep_mask_row_stride = n
    lens = None
    if valid_lens is not None:
        lens = np.asarray(valid_lens).reshape(-1)
        if lens.shape != (batch,) or (lens.size and (lens.min() < 0)):
            raise invalid(fn, f"valid_lens must be {batch} non-negative lengths")
        lens = np.ascontiguousarray(lens, dtype=np.uint64)
        keep_alive.append(lens)
        opts.valid_lens = ptr_or_null(lens)
    return lens


def _workspace(workspace, fn):
    """(pointer, bytes) of a caller's workspace array, or (None, 0)."""
    if workspace is None:
        return None, 0
    p = wptr(workspace) if type(workspace) is NDARRAY else 0
    if p:
        return p, workspace.nbytes
    if not isinstance(workspace, np.ndarray) or not workspace.flags.c_contiguous:
        raise invalid(fn, "workspace must be a C-contiguous numpy array")
    if not workspace.flags.writeable:
        raise invalid(fn, "workspace is read-only")
    return addr(workspace), workspace.nbytes


def topk(
    scores,
    k: Optional[int] = None,
    *,
    capacity: Optional[float] = None,
    row_k=None,
    order: str = "position",
    keep_first: int = 0,
    keep_last: int = 0,
    keep_mask=None,
    valid_lens=None,
    return_scores: bool = False,
    workspace: Optional[np.ndarray] = None,
    out: Optional[np.ndarray] = None,
    out_scores: Optional[np.ndarray] = None,
    out_counts: Optional[np.ndarray] = None,
):
    """Exact top-k of each row of ``scores`` (float32 ``[n]`` or ``[batch, n]``).

    Ranks numbers by value (-0.0 == +0.0), every NaN below every number, ties by lower
    index; identical on every ISA level. Give exactly one of ``k`` (every row),
    ``capacity`` (``k_row = ceil(capacity * valid_len)``) or ``row_k`` (one per row).
    Forced keeps (``keep_first``, ``keep_last``, ``keep_mask``) count within k.
    ``order``: ``"position"`` (ascending indices) or ``"score"`` (descending score).
    ``workspace``: None (a buffer owned by the calling thread) or a caller array of at
    least :func:`topk_workspace_size` bytes.

    Returns, for 1-D scores, the uint32 indices (and their scores with
    ``return_scores``); for 2-D scores with one k, ``[batch, k]`` indices; with
    ``capacity`` / ``row_k``, ``(indices, counts)`` where row r's first ``counts[r]``
    entries are its indices and the rest are 0xFFFFFFFF; ``return_scores`` appends the
    scores of the indices (NaN-padded).

    Outputs for calls in a loop (each written in place and returned; nothing is
    allocated when every output is given): ``out``, the uint32 indices (``[k]`` for 1-D
    scores, ``[batch, k]``; ``[batch, max k_row]`` with ``capacity`` / ``row_k``, or
    ``[k_row]`` for one row); ``out_scores``, float32 of the same shape (implies
    ``return_scores``); ``out_counts``, uint64 ``[batch]`` (``capacity`` / ``row_k``).
    """
    fn = _TOPK
    sp = cptr(scores) if type(scores) is NDARRAY and scores.dtype is F32 else 0
    nd = scores.ndim if sp else 0
    if (
        (nd == 1 or nd == 2) and k is not None and capacity is None and row_k is None
        and keep_mask is None and valid_lens is None and not keep_first and not keep_last
        and order == "position" and not return_scores and out_scores is None
    ):
        # Fast path: C-contiguous scores, one k, default options.
        kk = k if type(k) is int and 0 <= k <= SIZE_MAX else index(k, fn, "k")
        if nd == 1:
            batch, n = 1, len(scores)
        else:
            batch, n = scores.shape
        if out is None:
            out = np.empty(kk if nd == 1 else (batch, kk), U32)
            op, os_ = addr(out), kk
        elif type(out) is NDARRAY and out.dtype is U32 and out.shape == ((kk,) if nd == 1 else (batch, kk)) and (
            op := wptr(out)
        ):
            os_ = kk
        else:
            op, os_ = _out_rows(out, fn, "out", nd == 1, batch, kk, U32)
        if workspace is None:
            wp, wn = None, 0
        elif type(workspace) is NDARRAY and (wp := wptr(workspace)):
            wn = workspace.nbytes
        else:
            wp, wn = _workspace(workspace, fn)
        st = _topk(sp, batch, n, n, kk, None, op, os_, None, wp, wn)
        if st:
            raise TokenrouteError(st, fn)
        return out
    one, s2, sp, batch, n, ss = _scores(scores, fn)
    return _topk_options(one, s2, sp, batch, n, ss, k, capacity, row_k, order, keep_first,
                         keep_last, keep_mask, valid_lens, return_scores, workspace, out,
                         out_scores, out_counts)


def _topk_options(one, s2, sp, batch, n, ss, k, capacity, row_k, order, keep_first, keep_last,
                  keep_mask, valid_lens, return_scores, workspace, out, out_scores, out_counts):
    """:func:`topk` with options: order, forced keeps, valid lengths, per-row k. ``s2``
    (the scores, possibly a copy) stays referenced here until the call returns."""
    fn = _TOPK
    if order not in ("position", "score"):
        raise invalid(fn, f"order must be 'position' or 'score', not {order!r}")
    if sum(x is not None for x in (k, capacity, row_k)) != 1:
        raise invalid(fn, "give exactly one of k, capacity or row_k")
    opts = options(TopkOptions)
    alive = []
    lens = _keeps(opts, fn, batch, n, keep_first, keep_last, keep_mask, valid_lens, alive)
    if order == "score":
        opts.flags |= TKR_TOPK_ORDER_SCORE
    per_row = k is None
    if k is not None:
        kk = width = index(k, fn, "k")
    elif capacity is not None:
        if isinstance(capacity, (bool, str)) or not isinstance(capacity, (int, float, np.number)):
            raise invalid(fn, f"capacity must be a number in [0, 1], got {capacity!r}")
        opts.flags |= TKR_TOPK_CAPACITY
        opts.capacity = cap = float(capacity)
        kk = 0
        # ceil(cap * len) grows with len: the longest row has the largest k.
        longest = n if lens is None else int(lens.max(initial=0))
        width = min(math.ceil(cap * longest), longest) if 0 <= cap <= 1 else 0
    else:
        rk = np.asarray(row_k).reshape(-1)
        if rk.shape != (batch,) or (rk.size and (not np.issubdtype(rk.dtype, np.integer) or rk.min() < 0)):
            raise invalid(fn, f"row_k must be {batch} non-negative integers")
        rk = np.ascontiguousarray(rk, dtype=np.uint64)
        alive.append(rk)
        opts.row_k = ptr_or_null(rk)
        kk = 0
        width = int(rk.max(initial=0))
    # 2-D per-row results are padded past each row's count; one row (1-D scores) is
    # exactly width = k_row long.
    pad = per_row and not one
    shape = (width,) if one else (batch, width)
    pad_idx = pad and out is not None  # a caller's array is padded after the call
    if out is None:
        out = np.full(shape, PAD, np.uint32) if pad else np.empty(shape, np.uint32)
        op, os_ = addr(out), width
    else:
        op, os_ = _out_rows(out, fn, "out", one, batch, width, U32)
    want_scores = return_scores or out_scores is not None
    pad_scores = pad and out_scores is not None
    if want_scores:
        if out_scores is None:
            out_scores = np.full(shape, np.nan, np.float32) if pad else np.empty(shape, np.float32)
            opts.out_scores, opts.out_scores_row_stride = addr(out_scores), width
        else:
            opts.out_scores, opts.out_scores_row_stride = _out_rows(
                out_scores, fn, "out_scores", one, batch, width, F32)
    cp = None
    if pad:
        if out_counts is None:
            out_counts = np.empty(batch, dtype=UINTP)
            cp = addr(out_counts)
        else:
            cp, _ = _out_rows(out_counts, fn, "out_counts", True, 1, batch, UINTP)
    wp, wn = _workspace(workspace, fn)
    st = _topk(sp, batch, n, ss, kk, opts, op, os_, cp, wp, wn)
    if st:
        raise TokenrouteError(st, fn)
    if pad_idx:
        _pad_rows(out, out_counts, PAD)
    if pad_scores:
        _pad_rows(out_scores, out_counts, np.float32(np.nan))
    res = (out, out_counts) if pad else (out,)
    if want_scores:
        res = res + (out_scores,)
    return res[0] if len(res) == 1 else res


def topk_workspace_size(n: int) -> int:
    """Bytes of workspace :func:`topk` needs for rows of up to ``n`` tokens."""
    out = c_size_t()
    check(_ws_size(index(n, "tkr_topk_workspace_size", "n"), ctypes.byref(out)), "tkr_topk_workspace_size")
    return out.value


def _real(value, fn: str, name: str) -> float:
    """A float argument (any real number; NaN and infinities included)."""
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return float(value)
    except (TypeError, ValueError):
        raise invalid(fn, f"{name} must be a number, got {value!r}") from None


def threshold(
    scores,
    tau: float = 0.5,
    *,
    row_tau=None,
    keep_first: int = 0,
    keep_last: int = 0,
    keep_mask=None,
    valid_lens=None,
    return_mask: bool = False,
    out: Optional[np.ndarray] = None,
    out_counts: Optional[np.ndarray] = None,
    out_mask: Optional[np.ndarray] = None,
):
    """Tokens with ``score > tau`` (strict; NaN never selected) plus the forced keeps,
    ascending, for each row of ``scores`` (float32 ``[n]`` or ``[batch, n]``).

    Returns, for 1-D scores, the uint32 indices, exactly as many as were selected; for
    2-D scores, ``(indices, counts)`` with ``[batch, n]`` indices whose row r holds
    ``counts[r]`` entries then 0xFFFFFFFF. ``return_mask`` appends the bool mask of the
    selected tokens.

    Outputs for calls in a loop (written in place; nothing is allocated for 1-D scores
    when ``out`` is given): ``out``, uint32 with room for every token (1-D scores: at
    least ``n`` entries, of which the first ``count`` are returned as a view; 2-D:
    ``[batch, n]``, padded as above); ``out_counts``, uint64 ``[batch]`` (2-D scores);
    ``out_mask``, bool or uint8 of the scores' shape (implies ``return_mask``).
    """
    fn = _THRESHOLD
    if type(tau) is not float:
        tau = _real(tau, fn, "tau")
    sp = cptr(scores) if type(scores) is NDARRAY and scores.dtype is F32 else 0
    if (
        sp and scores.ndim == 1 and row_tau is None and keep_mask is None and valid_lens is None
        and not keep_first and not keep_last and not return_mask and out_mask is None
    ):
        # Fast path: one C-contiguous row, default options.
        n = len(scores)
        count, cp, _, _ = slots()
        if out is None:
            buf = np.empty(n, U32)
            st = _threshold(sp, 1, n, n, tau, None, addr(buf), n, cp)
            if st:
                raise TokenrouteError(st, fn)
            return exact(buf, count.value)
        if not (type(out) is NDARRAY and out.dtype is U32 and out.ndim == 1 and len(out) >= n and (
            op := wptr(out)
        )):
            op = _out_vector(out, fn, "out", n, U32)
        st = _threshold(sp, 1, n, n, tau, None, op, n, cp)
        if st:
            raise TokenrouteError(st, fn)
        return out[: count.value]
    one, s2, sp, batch, n, ss = _scores(scores, fn)
    return _threshold_options(one, s2, sp, batch, n, ss, tau, row_tau, keep_first, keep_last,
                              keep_mask, valid_lens, return_mask, out, out_counts, out_mask)


def _threshold_options(one, s2, sp, batch, n, ss, tau, row_tau, keep_first, keep_last,
                       keep_mask, valid_lens, return_mask, out, out_counts, out_mask):
    """:func:`threshold` of a batch, or with options (forced keeps, valid lengths, per-row
    tau, the mask output). ``s2`` (the scores, possibly a copy) stays referenced here
    until the call returns."""
    fn = _THRESHOLD
    opts = options(ThresholdOptions)
    alive = []
    _keeps(opts, fn, batch, n, keep_first, keep_last, keep_mask, valid_lens, alive)
    if row_tau is not None:
        rt = np.asarray(row_tau, dtype=np.float32).reshape(-1)
        if rt.shape != (batch,):
            raise invalid(fn, f"row_tau must have {batch} values")
        rt = np.ascontiguousarray(rt)
        alive.append(rt)
        opts.row_tau = ptr_or_null(rt)
    want_mask = return_mask or out_mask is not None
    if want_mask:
        if out_mask is None:
            out_mask = np.empty(n if one else (batch, n), BOOL)
            mp, ms = addr(out_mask), n
        else:
            mdt = U8 if isinstance(out_mask, np.ndarray) and out_mask.dtype == U8 else BOOL
            mp, ms = _out_rows(out_mask, fn, "out_mask", one, batch, n, mdt)
        opts.out_mask = mp
        opts.out_mask_row_stride = ms
    if one:
        count, cp, _, _ = slots()
        if out is None:
            buf = np.empty(n, U32)
            op = addr(buf)
        else:
            op = _out_vector(out, fn, "out", n, U32)
    else:
        if out is None:
            out = np.empty((batch, n), U32)
            op, os_ = addr(out), n
        else:
            op, os_ = _out_rows(out, fn, "out", False, batch, n, U32)
        if out_counts is None:
            out_counts = np.empty(batch, UINTP)
            cp = addr(out_counts)
        else:
            cp, _ = _out_rows(out_counts, fn, "out_counts", True, 1, batch, UINTP)
    st = _threshold(sp, batch, n, ss, tau, opts, op, n if one else os_, cp)
    if st:
        raise TokenrouteError(st, fn)
    if one:
        r = exact(buf, count.value) if out is None else out[: count.value]
        return (r, out_mask) if want_mask else r
    _pad_rows(out, out_counts, PAD)
    res = (out, out_counts)
    return res + (out_mask,) if want_mask else res


def mask_to_indices(mask, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Positions of the non-zero entries of a 1-D bool/uint8 mask, ascending (uint32),
    exactly as many as there are. ``out``: a uint32 array of at least ``len(mask)``
    entries to write them into (the result is a view of its first entries)."""
    fn = "tkr_mask_to_indices"
    m = mask
    mp = cptr(m) if type(m) is NDARRAY and (m.dtype is BOOL or m.dtype is U8) and m.ndim == 1 else 0
    if not mp:
        m = np.asarray(m)
        if m.dtype not in (np.bool_, np.uint8) or m.ndim != 1:
            raise invalid(fn, f"mask must be a 1-D bool or uint8 array, got {m.dtype} {m.shape}")
        m = np.ascontiguousarray(m)
        mp = addr(m)
    n = len(m)
    count, cp, _, _ = slots()
    if out is None:
        buf = np.empty(n, U32)
        st = _mask_to_indices(mp, n, addr(buf), cp)
        if st:
            raise TokenrouteError(st, fn)
        return exact(buf, count.value)
    st = _mask_to_indices(mp, n, _out_vector(out, fn, "out", n, U32), cp)
    if st:
        raise TokenrouteError(st, fn)
    return out[: count.value]


def indices_to_mask(indices, n: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """A bool mask of ``n`` tokens, True at ``indices`` (any order, repeats allowed;
    each must be in ``[0, n)``, else ``TKR_STATUS_OUT_OF_RANGE``). ``out``: a bool or
    uint8 array of shape ``(n,)`` to write it into (returned)."""
    fn = "tkr_indices_to_mask"
    n = n if type(n) is int and n >= 0 else index(n, fn, "n")
    ix = indices
    ip = cptr(ix) if type(ix) is NDARRAY and ix.dtype is U32 and ix.ndim == 1 else 0
    if not ip:
        ix = np.asarray(ix).reshape(-1)
        if ix.size and not np.issubdtype(ix.dtype, np.integer):
            raise invalid(fn, f"indices must be integers, got {ix.dtype}")
        if ix.size and (ix.min() < 0 or ix.max() > 0xFFFFFFFF):
            raise TokenrouteError(TKR_STATUS_OUT_OF_RANGE, fn, "an index outside [0, 2^32)")
        ix = np.ascontiguousarray(ix, dtype=np.uint32)
        ip = addr(ix)
    if out is None:
        out = np.empty(n, BOOL)
        op = addr(out)
    elif isinstance(out, np.ndarray) and out.dtype == U8:
        op, _ = _out_rows(out, fn, "out", True, 1, n, U8)
    else:
        op, _ = _out_rows(out, fn, "out", True, 1, n, BOOL)
    st = _indices_to_mask(ip, len(ix), op, n)
    if st:
        raise TokenrouteError(st, fn)
    return out
