"""The fused route call: router scores, selection and the compacted rows of one
sequence in one call (``tkr_route``)."""

from __future__ import annotations

import ctypes
import math
from ctypes import POINTER, c_float, c_size_t, c_uint32, c_void_p, c_double
from typing import NamedTuple, Optional

import numpy as np

from ._arrays import element_code, input_matrix, input_vector, invalid
from ._ffi import check, constant, declare
from .score import ACTIVATIONS
from .select import TKR_TOPK_CAPACITY, TKR_TOPK_ORDER_SCORE

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


class Routed(NamedTuple):
    """The result of :func:`route`: selected token indices (uint32, ascending or by
    descending score), their scores (float32) and their rows of ``h``."""

    indices: np.ndarray
    scores: np.ndarray
    rows: np.ndarray


def _ptr(a: Optional[np.ndarray]):
    return None if a is None or a.size == 0 else a.ctypes.data


def route_workspace_size(n_tokens: int) -> int:
    """Bytes of workspace top-k routing needs for ``n_tokens`` tokens."""
    out = c_size_t()
    check(_route_ws(int(n_tokens), ctypes.byref(out)), "tkr_route_workspace_size")
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
    """
    fn = "tkr_route"
    if activation not in ACTIVATIONS:
        raise invalid(fn, f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
    if order not in ("position", "score"):
        raise invalid(fn, f"order must be 'position' or 'score', not {order!r}")
    if sum(x is not None for x in (k, capacity, tau)) != 1:
        raise invalid(fn, "give exactly one of k, capacity or tau")
    if not isinstance(h, np.ndarray) or not isinstance(w, np.ndarray):
        raise invalid(fn, "h and w must be numpy arrays")
    code = element_code(h, dtype, fn, "h")
    if element_code(w, dtype, fn, "w") != code or h.dtype != w.dtype:
        raise invalid(fn, f"h and w must have the same element type ({h.dtype} vs {w.dtype})")
    h, hp, n, d, hs = input_matrix(h, fn, "h")
    w, wp = input_vector(w, fn, "w", d, h.dtype)
    opts = RouteOptions()
    check(_route_init(ctypes.byref(opts)), "tkr_route_options_init")
    if int(keep_first) < 0 or int(keep_last) < 0:
        raise invalid(fn, "keep_first and keep_last must be >= 0")
    opts.keep_first = int(keep_first)
    opts.keep_last = int(keep_last)
    alive = []
    if keep_mask is not None:
        m = np.asarray(keep_mask)
        if m.dtype not in (np.bool_, np.uint8) or m.shape != (n,):
            raise invalid(fn, f"keep_mask must be bool/uint8 of shape ({n},)")
        m = np.ascontiguousarray(m.view(np.uint8))
        alive.append(m)
        opts.keep_mask = _ptr(m)
    kk, ttau = 0, 0.0
    if tau is not None:
        if order != "position":
            raise invalid(fn, "order='score' applies to top-k only")
        select = TKR_ROUTE_THRESHOLD
        ttau = float(tau)
        cap = n
    else:
        select = TKR_ROUTE_TOPK
        if order == "score":
            opts.flags |= TKR_TOPK_ORDER_SCORE
        if k is not None:
            if int(k) < 0:
                raise invalid(fn, f"k must be >= 0, got {k}")
            kk = int(k)
            cap = kk
        else:
            opts.flags |= TKR_TOPK_CAPACITY
            opts.capacity = float(capacity)
            cap = min(math.ceil(float(capacity) * n), n) if 0 <= capacity <= 1 else 0
    bias_arr = None
    if bias is not None:
        bias_arr = np.array([bias], dtype=np.float32)
    idx = np.empty(cap, dtype=np.uint32)
    sc = np.empty(cap, dtype=np.float32)
    rows = np.empty((cap, d), dtype=h.dtype)
    count = c_size_t()
    st = _route(
        code, hp, n, d, hs, wp, _ptr(bias_arr), ACTIVATIONS[activation], select, kk, ttau,
        ctypes.byref(opts), _ptr(idx), _ptr(sc), _ptr(rows), d, cap, ctypes.byref(count),
        None, 0,
    )
    check(st, fn)
    c = int(count.value)
    return Routed(idx[:c], sc[:c], rows[:c])
