"""Token selection: exact top-k and threshold selection over f32 scores (batched, with
forced keeps and valid lengths), and mask <-> index conversions."""

from __future__ import annotations

import ctypes
import math
from ctypes import POINTER, c_double, c_float, c_size_t, c_uint32, c_void_p
from typing import Optional

import numpy as np

from ._arrays import input_matrix, invalid
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


def _ptr(a: Optional[np.ndarray]):
    return None if a is None or a.size == 0 else a.ctypes.data


def _scores(scores, fn):
    if not isinstance(scores, np.ndarray):
        scores = np.asarray(scores, dtype=np.float32)
    if scores.dtype != np.float32:
        raise invalid(fn, f"scores must be float32, got {scores.dtype}")
    if scores.ndim not in (1, 2):
        raise invalid(fn, f"scores must be 1-D or 2-D, got shape {scores.shape}")
    one = scores.ndim == 1
    s2, sp, batch, n, ss = input_matrix(scores.reshape(1, -1) if one else scores, fn, "scores")
    return one, s2, sp, batch, n, ss


def _keeps(opts, fn, batch, n, keep_first, keep_last, keep_mask, valid_lens, keep_alive):
    opts.keep_first = int(keep_first)
    opts.keep_last = int(keep_last)
    if keep_mask is not None:
        m = np.asarray(keep_mask)
        if m.dtype not in (np.bool_, np.uint8):
            raise invalid(fn, f"keep_mask must be bool or uint8, got {m.dtype}")
        m = m.reshape(1, -1) if m.ndim == 1 else m
        if m.shape != (batch, n):
            raise invalid(fn, f"keep_mask must have shape {(batch, n)}, got {m.shape}")
        m = np.ascontiguousarray(m.view(np.uint8))
        keep_alive.append(m)
        opts.keep_mask = _ptr(m)
        opts.keep_mask_row_stride = n
    lens = None
    if valid_lens is not None:
        lens = np.asarray(valid_lens).reshape(-1)
        if lens.shape != (batch,) or (lens.size and (lens.min() < 0)):
            raise invalid(fn, f"valid_lens must be {batch} non-negative lengths")
        lens = np.ascontiguousarray(lens, dtype=np.uint64)
        keep_alive.append(lens)
        opts.valid_lens = _ptr(lens)
    return lens


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
    """
    fn = "tkr_topk_f32"
    one, s2, sp, batch, n, ss = _scores(scores, fn)
    if order not in ("position", "score"):
        raise invalid(fn, f"order must be 'position' or 'score', not {order!r}")
    given = [x is not None for x in (k, capacity, row_k)]
    if sum(given) != 1:
        raise invalid(fn, "give exactly one of k, capacity or row_k")
    opts = TopkOptions()
    check(_topk_init(ctypes.byref(opts)), "tkr_topk_options_init")
    alive = []
    lens = _keeps(opts, fn, batch, n, keep_first, keep_last, keep_mask, valid_lens, alive)
    lens_list = [n] * batch if lens is None else [int(x) for x in lens]
    if order == "score":
        opts.flags |= TKR_TOPK_ORDER_SCORE
    per_row = k is None
    if k is not None:
        if int(k) < 0:
            raise invalid(fn, f"k must be >= 0, got {k}")
        kk = int(k)
        krows = [kk] * batch
    elif capacity is not None:
        opts.flags |= TKR_TOPK_CAPACITY
        opts.capacity = float(capacity)
        kk = 0
        krows = [min(math.ceil(float(capacity) * L), L) if 0 <= capacity <= 1 else 0 for L in lens_list]
    else:
        rk = np.asarray(row_k).reshape(-1)
        if rk.shape != (batch,) or (rk.size and rk.min() < 0):
            raise invalid(fn, f"row_k must be {batch} non-negative values")
        rk = np.ascontiguousarray(rk, dtype=np.uint64)
        alive.append(rk)
        opts.row_k = _ptr(rk)
        kk = 0
        krows = [int(x) for x in rk]
    kmax = max(krows, default=0)
    idx = np.full((batch, kmax), PAD, dtype=np.uint32)
    counts = np.zeros(batch, dtype=np.uint64)
    vals = None
    if return_scores:
        vals = np.full((batch, kmax), np.nan, dtype=np.float32)
        opts.out_scores = _ptr(vals)
        opts.out_scores_row_stride = kmax
    wp, wn = None, 0
    if workspace is not None:
        if not isinstance(workspace, np.ndarray) or not workspace.flags.c_contiguous:
            raise invalid(fn, "workspace must be a C-contiguous numpy array")
        if not workspace.flags.writeable:
            raise invalid(fn, "workspace is read-only")
        wp, wn = _ptr(workspace), workspace.nbytes
    st = _topk(sp, batch, n, ss, kk, ctypes.byref(opts), _ptr(idx), kmax, _ptr(counts), wp, wn)
    check(st, fn)
    if one:
        r = idx[0, : int(counts[0])] if batch else idx.reshape(-1)
        if return_scores:
            return r, vals[0, : int(counts[0])]
        return r
    out = (idx, counts) if per_row else (idx,)
    if return_scores:
        out = out + (vals,)
    return out[0] if len(out) == 1 else out


def topk_workspace_size(n: int) -> int:
    """Bytes of workspace :func:`topk` needs for rows of up to ``n`` tokens."""
    out = c_size_t()
    check(_ws_size(int(n), ctypes.byref(out)), "tkr_topk_workspace_size")
    return out.value


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
):
    """Tokens with ``score > tau`` (strict; NaN never selected) plus the forced keeps,
    ascending, for each row of ``scores`` (float32 ``[n]`` or ``[batch, n]``).

    Returns, for 1-D scores, the uint32 indices; for 2-D scores, ``(indices, counts)``
    with ``[batch, n]`` indices whose row r holds ``counts[r]`` entries then 0xFFFFFFFF.
    ``return_mask`` appends the bool mask of the selected tokens.
    """
    fn = "tkr_threshold_f32"
    one, s2, sp, batch, n, ss = _scores(scores, fn)
    opts = ThresholdOptions()
    check(_threshold_init(ctypes.byref(opts)), "tkr_threshold_options_init")
    alive = []
    _keeps(opts, fn, batch, n, keep_first, keep_last, keep_mask, valid_lens, alive)
    if row_tau is not None:
        rt = np.ascontiguousarray(np.asarray(row_tau, dtype=np.float32).reshape(-1))
        if rt.shape != (batch,):
            raise invalid(fn, f"row_tau must have {batch} values")
        alive.append(rt)
        opts.row_tau = _ptr(rt)
    mask = None
    if return_mask:
        mask = np.zeros((batch, n), dtype=np.uint8)
        opts.out_mask = _ptr(mask)
        opts.out_mask_row_stride = n
    idx = np.empty((batch, n), dtype=np.uint32)
    counts = np.zeros(batch, dtype=np.uint64)
    st = _threshold(sp, batch, n, ss, float(tau), ctypes.byref(opts), _ptr(idx), n, _ptr(counts))
    check(st, fn)
    for r in range(batch):
        idx[r, int(counts[r]):] = PAD
    if one:
        r = idx[0, : int(counts[0])] if batch else idx.reshape(-1)
        return (r, mask[0].view(np.bool_)) if return_mask else r
    out = (idx, counts)
    return out + (mask.view(np.bool_),) if return_mask else out


def mask_to_indices(mask) -> np.ndarray:
    """Positions of the non-zero entries of a 1-D bool/uint8 mask, ascending (uint32)."""
    fn = "tkr_mask_to_indices"
    m = np.asarray(mask)
    if m.dtype not in (np.bool_, np.uint8) or m.ndim != 1:
        raise invalid(fn, f"mask must be a 1-D bool or uint8 array, got {m.dtype} {m.shape}")
    m = np.ascontiguousarray(m.view(np.uint8))
    out = np.empty(m.size, dtype=np.uint32)
    count = c_size_t()
    check(_mask_to_indices(_ptr(m), m.size, _ptr(out), ctypes.byref(count)), fn)
    return out[: count.value]


def indices_to_mask(indices, n: int) -> np.ndarray:
    """A bool mask of ``n`` tokens, True at ``indices`` (any order, repeats allowed;
    each must be in ``[0, n)``, else ``TKR_STATUS_OUT_OF_RANGE``)."""
    fn = "tkr_indices_to_mask"
    ix = np.asarray(indices).reshape(-1)
    if ix.size and not np.issubdtype(ix.dtype, np.integer):
        raise invalid(fn, f"indices must be integers, got {ix.dtype}")
    if ix.size and (ix.min() < 0 or ix.max() > 0xFFFFFFFF):
        raise TokenrouteError(TKR_STATUS_OUT_OF_RANGE, fn, "an index outside [0, 2^32)")
    ix = np.ascontiguousarray(ix, dtype=np.uint32)
    out = np.empty(int(n), dtype=np.uint8)
    check(_indices_to_mask(_ptr(ix), ix.size, _ptr(out), int(n)), fn)
    return out.view(np.bool_)
