"""The fused route call: router scores, selection and the compacted rows of one
sequence in one call (``tkr_route``)."""

from __future__ import annotations

import ctypes
import math
from ctypes import POINTER, c_float, c_size_t, c_uint32, c_void_p, c_double
from typing import NamedTuple, Optional, Tuple

import numpy as np

from ._arrays import (
    ELEMENT_CODES,
    F32,
    NDARRAY,
    U32,
    addr,
    cptr,
    element_code,
    exact,
    index,
    input_matrix,
    input_vector,
    invalid,
    options,
    output_matrix,
    output_vector,
    slots,
    wptr,
)
from ._ffi import TokenrouteError, check, constant, declare
from .score import ACTIVATIONS
from .select import TKR_TOPK_CAPACITY, TKR_TOPK_ORDER_SCORE, _real, _workspace

TKR_ROUTE_TOPK = constant("TKR_ROUTE_TOPK", 1)
TKR_ROUTE_THRESHOLD = constant("TKR_ROUTE_THRESHOLD", 2)


class RouteOptions(ctypes.Structure):
    """``struct tkr_route_options`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("flags", c_uint32),
        ("reserved", c_uint32),
        ("keep_first", c_size_t),
        ("keep_last", c_size_t),
        ("keep_mask", c_void_p),
        ("capacity", c_double),
    ]


_route = declare(
    "tkr_route",
    c_uint32,
    [
        c_uint32,  # dtype
        c_void_p,  # h
        c_size_t,  # n_tokens
        c_size_t,  # d
        c_size_t,  # h_row_stride
        c_void_p,  # w
        c_void_p,  # bias
        c_uint32,  # activation
        c_uint32,  # select
        c_size_t,  # k
        c_float,  # tau
        POINTER(RouteOptions),
        c_void_p,  # out_idx
        c_void_p,  # out_scores
        c_void_p,  # out_rows
        c_size_t,  # out_rows_stride
        c_size_t,  # out_capacity
        POINTER(c_size_t),  # out_count
        c_void_p,  # workspace
        c_size_t,  # workspace_size
    ],
)
_route_init = declare("tkr_route_options_init", c_uint32, [POINTER(RouteOptions)])
_route_ws = declare("tkr_route_workspace_size", c_uint32, [c_size_t, POINTER(c_size_t)])


_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


class Routed(NamedTuple):
    """The result of :func:`route`: selected token indices (uint32, ascending or by
    descending score), their scores (float32) and their rows of ``h``."""

    indices: np.ndarray
    scores: np.ndarray
    rows: np.ndarray


def route_workspace_size(n_tokens: int) -> int:
    """Bytes of workspace top-k routing needs for ``n_tokens`` tokens."""
    out = c_size_t()
    n = index(n_tokens, "tkr_route_workspace_size", "n_tokens")
    check(_route_ws(n, ctypes.byref(out)), "tkr_route_workspace_size")
    return out.value


def route(
    h,
    w,
    bias: Optional[float] = None,
    *,
    k: Optional[int] = None,
    capacity: Optional[float] = None,
    tau: Optional[float] = None,
    activation: str = "sigmoid",
    order: str = "position",
    keep_first: int = 0,
    keep_last: int = 0,
    keep_mask=None,
    dtype: Optional[str] = None,
    out: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
    workspace: Optional[np.ndarray] = None,
) -> Routed:
    """Scores every token ``s_i = act(h[i] . w + bias)``, selects tokens and gathers
    their rows, in one call (identical to :func:`score` -> :func:`topk` /
    :func:`threshold` -> :func:`gather_rows`).

    ``h``: ``[n, d]`` float32 / float16 / bfloat16 (or uint16 with ``dtype``), rows may
    be strided. ``w``: ``[d]`` of the same type. ``bias``: a float or None.
    Selection: exactly one of ``k`` (top-k), ``capacity`` (top ``ceil(capacity * n)``)
    or ``tau`` (every score ``> tau``). Forced keeps (``keep_first``, ``keep_last``,
    ``keep_mask``) count within k for top-k and are added for threshold selection.
    ``order``: ``"position"`` or ``"score"`` (top-k only).

    Returns a :class:`Routed` of exactly the selected tokens. For calls in a loop:
    ``out=(indices, scores, rows)``, caller arrays (uint32, float32, rows of ``h``'s
    dtype and ``d`` contiguous elements) with room for the selection (k tokens, or
    ``n`` for threshold selection): the result is views of their first entries;
    ``workspace``: a caller array of at least :func:`route_workspace_size` bytes
    (top-k; threshold routing needs none). With both, nothing is allocated.
    """
    fn = "tkr_route"
    act = ACTIVATIONS.get(activation) if type(activation) is str else None
    if act is None:
        raise invalid(fn, f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    if order != "position" and order != "score":
        raise invalid(fn, f"order must be 'position' or 'score', not {order!r}")
    if (k is None) + (capacity is None) + (tau is None) != 2:
        raise invalid(fn, "give exactly one of k, capacity or tau")
    code = None
    if (
        dtype is None and type(h) is NDARRAY and type(w) is NDARRAY and h.dtype is w.dtype
        and h.ndim == 2 and w.ndim == 1
    ):
        hp, wp = cptr(h), cptr(w)
        if hp and wp:
            code = ELEMENT_CODES.get(h.dtype)
            n, d = h.shape
            hs = d
            if len(w) != d:
                raise invalid(fn, f"w must have shape ({d},), got {w.shape}")
    if code is None:
        if not isinstance(h, np.ndarray) or not isinstance(w, np.ndarray):
            raise invalid(fn, "h and w must be numpy arrays")
        code = element_code(h, dtype, fn, "h")
        if element_code(w, dtype, fn, "w") != code or h.dtype != w.dtype:
            raise invalid(fn, f"h and w must have the same element type ({h.dtype} vs {w.dtype})")
        h, hp, n, d, hs = input_matrix(h, fn, "h")
        w, wp = input_vector(w, fn, "w", d, h.dtype)
    opts = None
    alive = None
    if keep_first or keep_last or keep_mask is not None or capacity is not None or order == "score":
        opts = options(RouteOptions)
        opts.keep_first = index(keep_first, fn, "keep_first")
        opts.keep_last = index(keep_last, fn, "keep_last")
        if keep_mask is not None:
            m = np.asarray(keep_mask)
            if m.dtype not in (np.bool_, np.uint8) or m.shape != (n,):
                raise invalid(fn, f"keep_mask must be bool/uint8 of shape ({n},)")
            alive = m = np.ascontiguousarray(m)
            opts.keep_mask = addr(m)
    kk, ttau = 0, 0.0
    if tau is not None:
        if order != "position":
            raise invalid(fn, "order='score' applies to top-k only")
        select = TKR_ROUTE_THRESHOLD
        ttau = tau if type(tau) is float else _real(tau, fn, "tau")
        cap = n
    else:
        select = TKR_ROUTE_TOPK
        if order == "score":
            opts.flags |= TKR_TOPK_ORDER_SCORE
        if k is not None:
            kk = cap = k if type(k) is int and 0 <= k else index(k, fn, "k")
        else:
            capacity = _real(capacity, fn, "capacity")
            opts.flags |= TKR_TOPK_CAPACITY
            opts.capacity = capacity
            cap = min(math.ceil(capacity * n), n) if 0 <= capacity <= 1 else 0
    count, _, slot, bp = slots()
    if bias is None:
        bp = None
    else:
        if type(bias) is NDARRAY and bias.size == 1:
            bias = bias.reshape(-1)[0]
        slot.value = bias if type(bias) is float else _real(bias, fn, "bias")
    if out is None:
        idx = np.empty(cap, U32)
        sc = np.empty(cap, F32)
        rows = np.empty((cap, d), h.dtype)
        ip, sp, rp, rs, room = addr(idx), addr(sc), addr(rows), d, cap
    else:
        idx, sc, rows, ip, sp, rp, rs, room = _route_out(out, fn, d, h.dtype)
    wsp, wsn = _workspace(workspace, fn)
    st = _route(code, hp, n, d, hs, wp, bp, act, select, kk, ttau, opts, ip, sp, rp, rs, room,
                count, wsp, wsn)
    if st:
        raise TokenrouteError(st, fn)
    c = count.value
    del alive
    if c != len(idx):  # threshold selection: fewer than the room
        if out is None:
            idx, sc, rows = exact(idx, c), exact(sc, c), exact(rows, c)
        else:
            idx, sc, rows = idx[:c], sc[:c], rows[:c]
    return _new_tuple(Routed, (idx, sc, rows))


def _route_out(out, fn, d, dtype):
    """(indices, scores, rows, their pointers, the rows' stride, room) of a caller's
    ``out=(indices, scores, rows)``."""
    if not (isinstance(out, tuple) and len(out) == 3):
        raise invalid(fn, "out must be a tuple (indices, scores, rows)")
    idx, sc, rows = out
    if (
        type(idx) is NDARRAY and type(sc) is NDARRAY and type(rows) is NDARRAY
        and idx.dtype is U32 and sc.dtype is F32 and rows.dtype is dtype and idx.ndim == 1
        and sc.ndim == 1 and rows.ndim == 2 and rows.shape[1] == d
    ):
        ip, sp, rp = wptr(idx), wptr(sc), wptr(rows)
        if ip and sp and rp:
            return idx, sc, rows, ip, sp, rp, d, min(len(idx), len(sc), len(rows))
    room = min(len(a) if isinstance(a, np.ndarray) and a.ndim else 0 for a in out)
    ip = output_vector(idx, fn, "out indices", getattr(idx, "shape", ()), U32)
    sp = output_vector(sc, fn, "out scores", getattr(sc, "shape", ()), F32)
    if isinstance(rows, np.ndarray) and rows.ndim != 2:
        raise invalid(fn, f"out rows must be 2-D [room, {d}], got shape {rows.shape}")
    rp, rs = output_matrix(rows, fn, "out rows", len(rows) if isinstance(rows, np.ndarray) else 0, d, dtype)
    if idx.ndim != 1 or sc.ndim != 1:
        raise invalid(fn, "out indices and scores must be 1-D")
    return idx, sc, rows, ip, sp, rp, rs, room
