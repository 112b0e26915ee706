"""Sparse attention: flash-style attention over dense / index / block key sets with
causal and windowed masking by positions, GQA, log-sum-exp and attention-mass outputs;
the LSE merge of partial results; Quest key-block summaries, bounds and block
selection.

Tensors are 3-D numpy arrays ``[tokens, heads, head_dim]`` of float32, float16 or
``ml_dtypes.bfloat16`` (or uint16 bit patterns with ``dtype="f16"`` / ``"bf16"``).
Any non-negative element strides with a contiguous last axis are passed as they are
(token-major or head-major views, e.g. the q/k/v thirds of a fused QKV projection);
other layouts are copied first.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_float, c_size_t, c_uint32, c_void_p
from typing import NamedTuple, Optional, Tuple

import numpy as np

from ._arrays import BFLOAT16, DTYPE_CODES, element_code, invalid
from ._ffi import (
    TKR_DTYPE_BF16,
    TKR_DTYPE_F16,
    TKR_DTYPE_F32,
    TKR_STATUS_BAD_STRIDE,
    TKR_STATUS_OUT_OF_RANGE,
    TokenrouteError,
    check,
    constant,
    declare,
)

TKR_ATTENTION_CAUSAL = constant("TKR_ATTENTION_CAUSAL", 1)
TKR_ATTENTION_BF16_DOT = constant("TKR_ATTENTION_BF16_DOT", 2)
TKR_KEYS_DENSE = constant("TKR_KEYS_DENSE", 0)
TKR_KEYS_INDICES = constant("TKR_KEYS_INDICES", 1)
TKR_KEYS_BLOCKS = constant("TKR_KEYS_BLOCKS", 2)
TKR_BLOCK_LISTS_SHARED = constant("TKR_BLOCK_LISTS_SHARED", 0)
TKR_BLOCK_LISTS_PER_KV_HEAD = constant("TKR_BLOCK_LISTS_PER_KV_HEAD", 1)
TKR_BLOCK_LISTS_PER_Q_HEAD = constant("TKR_BLOCK_LISTS_PER_Q_HEAD", 2)

BLOCK_LISTS = {
    "shared": TKR_BLOCK_LISTS_SHARED,
    "per_kv_head": TKR_BLOCK_LISTS_PER_KV_HEAD,
    "per_q_head": TKR_BLOCK_LISTS_PER_Q_HEAD,
}


class AttentionKeys(ctypes.Structure):
    """``struct tkr_attention_keys`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("kind", c_uint32),
        ("block_lists", c_uint32),
        ("indices", c_void_p),
        ("n_indices", c_size_t),
        ("block_size", c_size_t),
        ("query_block_size", c_size_t),
        ("block_offsets", c_void_p),
        ("block_ids", c_void_p),
        ("n_block_ids", c_size_t),
    ]


class AttentionOptions(ctypes.Structure):
    """``struct tkr_attention_options`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("scale", c_float),
        ("flags", c_uint32),
        ("window", c_uint32),
        ("out_dtype", c_uint32),
        ("q_positions", c_void_p),
        ("k_positions", c_void_p),
        ("lse", c_void_p),
        ("lse_token_stride", c_size_t),
        ("mass", c_void_p),
        ("mass_head_stride", c_size_t),
    ]


_S = c_size_t
_P = c_void_p
_attention = declare(
    "tkr_attention",
    c_uint32,
    [c_uint32, _P, _S, _S, _S, _S, _S, _P, _P, _S, _S, _S, _S, _S, _S,
     POINTER(AttentionKeys), POINTER(AttentionOptions), _P, _S, _S],
)
_keys_init = declare("tkr_attention_keys_init", c_uint32, [POINTER(AttentionKeys)])
_options_init = declare("tkr_attention_options_init", c_uint32, [POINTER(AttentionOptions)])
_merge = declare(
    "tkr_attention_merge",
    c_uint32,
    [c_uint32, _P, _S, _S, _S, _S, _S, _P, _S, _P, _S, _P],
)
_summary = declare(
    "tkr_key_block_summary",
    c_uint32,
    [c_uint32, _P, _S, _S, _S, _S, _S, _S, _S, _S, _P, _P],
)
_bound = declare(
    "tkr_key_block_bound",
    c_uint32,
    [c_uint32, _P, _S, _S, _S, _S, _S, _P, _P, _S, _S, _P, _S],
)
_quest = declare(
    "tkr_quest_select_blocks",
    c_uint32,
    [c_uint32, _P, _S, _S, _S, _S, _S, _P, _P, _S, _S, _S, _S, _S, _P, _P, POINTER(c_size_t)],
)


def _ptr(a: Optional[np.ndarray]):
    return None if a is None or a.size == 0 else a.ctypes.data


def _np_dtype(code: int, like: np.dtype) -> np.dtype:
    """The numpy dtype of elements of TKR_DTYPE ``code`` (uint16 bit patterns when the
    input itself was uint16, or bf16 without ml_dtypes)."""
    if code == TKR_DTYPE_F32:
        return np.dtype(np.float32)
    if like == np.uint16:
        return np.dtype(np.uint16)
    if code == TKR_DTYPE_F16:
        return np.dtype(np.float16)
    return BFLOAT16 if BFLOAT16 is not None else np.dtype(np.uint16)


def _layout(shape, strides, item) -> Optional[Tuple[int, int]]:
    """(token stride, head stride) in elements of a [n, h, d] layout the C API accepts
    (rows of contiguous elements that never overlap), or None."""
    n, h, d = shape
    if n * h * d == 0:  # numpy gives empty arrays zero strides: use C order's
        strides = (h * d * item, d * item, item)
    if d > 1 and strides[2] != item:
        return None
    if any(s < 0 or s % item for s in strides[:2]):
        return None
    ts, hs = strides[0] // item, strides[1] // item
    # Strides of length-1 axes are arbitrary in numpy: use the minimal ones.
    if h <= 1:
        hs = d
    if n <= 1:
        ts = max(h, 1) * hs
    if hs >= d and ts >= h * hs - (hs - d):  # token-major: heads within a token
        return ts, hs
    if ts >= d and hs >= n * ts - (ts - d):  # head-major: tokens within a head
        return ts, hs
    return None


def _tensor(a, fn: str, name: str, dtype: Optional[str]):
    """(array kept alive, TKR dtype, pointer, n, heads, head_dim, token stride, head
    stride) of a 3-D input, copied to C order when its layout is not describable."""
    if not isinstance(a, np.ndarray):
        raise invalid(fn, f"{name} must be a numpy array")
    if a.ndim != 3:
        raise invalid(fn, f"{name} must be 3-D [tokens, heads, head_dim], got shape {a.shape}")
    code = element_code(a, dtype, fn, name)
    lay = _layout(a.shape, a.strides, a.itemsize) if a.flags.aligned else None
    if lay is None:
        a = np.ascontiguousarray(a)
        lay = _layout(a.shape, a.strides, a.itemsize)
    n, h, d = a.shape
    return a, code, _ptr(a), n, h, d, lay[0], lay[1]


def _out_tensor(out, fn, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise invalid(fn, "out must be a numpy array")
    if out.dtype != dtype:
        raise invalid(fn, f"out must be {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise invalid(fn, f"out must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.writeable:
        raise invalid(fn, "out is read-only")
    if out.size and not out.flags.aligned:
        raise invalid(fn, "out is not aligned")
    lay = _layout(out.shape, out.strides, out.itemsize)
    if lay is None:
        raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, f"out strides {out.strides} are not supported")
    return lay


def _u32(a, fn, name):
    x = np.asarray(a).reshape(-1)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise invalid(fn, f"{name} must hold integers, got {x.dtype}")
    if x.size and x.dtype != np.uint32 and (x.min() < 0 or x.max() > 0xFFFFFFFF):
        raise TokenrouteError(TKR_STATUS_OUT_OF_RANGE, fn, f"{name} holds a value outside [0, 2^32)")
    return np.ascontiguousarray(x, dtype=np.uint32)


def _f32(a, fn, name, size=None):
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise invalid(fn, f"{name} must be a float32 numpy array")
    if size is not None and a.size < size:
        raise invalid(fn, f"{name} must hold at least {size} floats, got {a.size}")
    return np.ascontiguousarray(a)


class AttentionResult(NamedTuple):
    """:func:`attention` with ``return_lse`` or ``return_mass``: the output
    ``[n_q, n_heads_q, head_dim]``, the log-sum-exp ``[n_q, n_heads_q]`` (or None)
    and the attention mass (or None)."""

    out: np.ndarray
    lse: Optional[np.ndarray]
    mass: Optional[np.ndarray]


def attention(
    q,
    k,
    v,
    *,
    indices=None,
    block_size: Optional[int] = None,
    query_block_size: Optional[int] = None,
    block_offsets=None,
    block_ids=None,
    block_lists: str = "shared",
    causal: bool = False,
    window: int = 0,
    q_positions=None,
    k_positions=None,
    scale: float = 0.0,
    bf16_dot: bool = False,
    out_dtype: Optional[str] = None,
    out: Optional[np.ndarray] = None,
    return_lse: bool = False,
    return_mass: bool = False,
    mass: Optional[np.ndarray] = None,
    mass_per_head: bool = False,
    dtype: Optional[str] = None,
):
    """Attention of queries over a subset of keys (``tkr_attention``).

    ``q``: ``[n_q, n_heads_q, head_dim]``; ``k``, ``v``: ``[n_k, n_heads_kv, head_dim]``
    of the same element type; ``n_heads_q`` a multiple of ``n_heads_kv`` (GQA).

    Keys: dense by default; ``indices`` (K rows, shared by every query and head) or the
    block form (``block_size``, ``query_block_size``, ``block_offsets``, ``block_ids``,
    ``block_lists`` = ``"shared"`` / ``"per_kv_head"`` / ``"per_q_head"``).

    Masking: ``causal`` and/or ``window`` (> 0) by original positions; ``q_positions``
    (``n_q``) and ``k_positions`` (``n_k``) default to the last ``n_q`` positions of
    ``range(n_k)`` (queries at the end of the sequence) and ``range(n_k)``.
    ``scale``: 0 means ``1 / sqrt(head_dim)``. ``bf16_dot``: TKR_ATTENTION_BF16_DOT.
    ``out_dtype``: None (the input's), ``"f32"``, ``"f16"`` or ``"bf16"``; ``out``: a
    caller array of that type and shape (allocated when not given).

    ``return_mass``: per-key attention mass (the sum over queries and heads of the
    softmax probability), float32 ``[n_k]`` summed over heads, or
    ``[n_heads_kv, n_k]`` with ``mass_per_head``. ``mass``: a caller float32 array of
    that shape to ADD into (implies ``return_mass``).

    Returns ``out``, or an :class:`AttentionResult` ``(out, lse, mass)`` when
    ``return_lse`` or the mass is wanted.
    """
    fn = "tkr_attention"
    q, code, qp, n_q, hq, d, qts, qhs = _tensor(q, fn, "q", dtype)
    k, kcode, kp, n_k, hkv, dk, kts, khs = _tensor(k, fn, "k", dtype)
    v, vcode, vp, n_v, hv, dv, vts, vhs = _tensor(v, fn, "v", dtype)
    if not (code == kcode == vcode) or not (q.dtype == k.dtype == v.dtype):
        raise invalid(fn, f"q, k and v must share an element type ({q.dtype}, {k.dtype}, {v.dtype})")
    if (n_v, hv, dv) != (n_k, hkv, dk):
        raise invalid(fn, f"k {k.shape} and v {v.shape} must have the same shape")
    if dk != d:
        raise invalid(fn, f"q has head_dim {d} but k has {dk}")
    alive = []
    keys = AttentionKeys()
    _keys_init(ctypes.byref(keys))
    blocky = any(x is not None for x in (block_size, query_block_size, block_offsets, block_ids))
    if indices is not None and blocky:
        raise invalid(fn, "give either indices or the block form, not both")
    if indices is not None:
        ix = _u32(indices, fn, "indices")
        alive.append(ix)
        keys.kind = TKR_KEYS_INDICES
        keys.indices = _ptr(ix)
        keys.n_indices = ix.size
    elif blocky:
        if any(x is None for x in (block_size, query_block_size, block_offsets, block_ids)):
            raise invalid(fn, "the block form needs block_size, query_block_size, block_offsets and block_ids")
        if block_lists not in BLOCK_LISTS:
            raise invalid(fn, f"block_lists must be one of {sorted(BLOCK_LISTS)}, not {block_lists!r}")
        if int(block_size) < 0 or int(query_block_size) < 0:
            raise invalid(fn, "block sizes must be >= 0")
        ids = _u32(block_ids, fn, "block_ids")
        offs = np.asarray(block_offsets).reshape(-1)
        if offs.size and (not np.issubdtype(offs.dtype, np.integer) or offs.min() < 0):
            raise invalid(fn, "block_offsets must be non-negative integers")
        offs = np.ascontiguousarray(offs, dtype=np.uintp)
        qbs = max(int(query_block_size), 1)
        n_lists = -(-n_q // qbs) * {"shared": 1, "per_kv_head": hkv, "per_q_head": hq}[block_lists]
        if offs.size != n_lists + 1:
            raise invalid(fn, f"block_offsets must have {n_lists + 1} entries, got {offs.size}")
        alive += [ids, offs]
        keys.kind = TKR_KEYS_BLOCKS
        keys.block_lists = BLOCK_LISTS[block_lists]
        keys.block_size = int(block_size)
        keys.query_block_size = int(query_block_size)
        keys.block_offsets = _ptr(offs)
        keys.block_ids = _ptr(ids)
        keys.n_block_ids = ids.size
    opts = AttentionOptions()
    _options_init(ctypes.byref(opts))
    opts.scale = float(scale)
    if causal:
        opts.flags |= TKR_ATTENTION_CAUSAL
    if bf16_dot:
        opts.flags |= TKR_ATTENTION_BF16_DOT
    if int(window) < 0 or int(window) > 0xFFFFFFFF:
        raise invalid(fn, f"window must be in [0, 2^32), got {window}")
    opts.window = int(window)
    if causal or window or q_positions is not None or k_positions is not None:
        qpos = (
            _u32(q_positions, fn, "q_positions")
            if q_positions is not None
            else np.arange(max(n_k - n_q, 0), max(n_k - n_q, 0) + n_q, dtype=np.uint32)
        )
        kpos = _u32(k_positions, fn, "k_positions") if k_positions is not None else np.arange(n_k, dtype=np.uint32)
        if qpos.size != n_q or kpos.size != n_k:
            raise invalid(fn, f"q_positions needs {n_q} and k_positions {n_k} entries")
        alive += [qpos, kpos]
        opts.q_positions = _ptr(qpos)
        opts.k_positions = _ptr(kpos)
    if out_dtype is not None and out_dtype not in DTYPE_CODES:
        raise invalid(fn, f"out_dtype must be one of {sorted(DTYPE_CODES)}, not {out_dtype!r}")
    ocode = code if out_dtype is None else DTYPE_CODES[out_dtype]
    odt = q.dtype if out_dtype is None else _np_dtype(ocode, q.dtype if ocode != TKR_DTYPE_F32 else np.float32)
    opts.out_dtype = ocode
    if out is None:
        out = np.empty((n_q, hq, d), dtype=odt)
        ots, ohs = _layout(out.shape, out.strides, out.itemsize)
    else:
        odt = out.dtype if out.dtype == np.uint16 and ocode != TKR_DTYPE_F32 else odt
        ots, ohs = _out_tensor(out, fn, (n_q, hq, d), odt)
    lse = None
    if return_lse:
        lse = np.empty((n_q, hq), dtype=np.float32)
        opts.lse = _ptr(lse)
        opts.lse_token_stride = hq
    shape = (hkv, n_k) if mass_per_head else (n_k,)
    if mass is not None:
        if not isinstance(mass, np.ndarray) or mass.dtype != np.float32 or mass.shape != shape:
            raise invalid(fn, f"mass must be a float32 array of shape {shape}")
        if mass.size and not (mass.flags.c_contiguous and mass.flags.writeable and mass.flags.aligned):
            raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, "mass must be C-contiguous and writeable")
        return_mass = True
    elif return_mass:
        mass = np.zeros(shape, dtype=np.float32)
    if return_mass:
        opts.mass = _ptr(mass)
        opts.mass_head_stride = n_k if mass_per_head and n_k else 0
        if mass_per_head and n_k == 0:
            opts.mass = None
    st = _attention(
        code, qp, n_q, hq, d, qts, qhs, kp, vp, n_k, hkv, kts, khs, vts, vhs,
        ctypes.byref(keys), ctypes.byref(opts), _ptr(out), ots, ohs,
    )
    check(st, fn)
    if return_lse or return_mass:
        return AttentionResult(out, lse, mass if return_mass else None)
    return out


def attention_merge(
    part_out,
    part_lse,
    *,
    out_dtype: str = "f32",
    out: Optional[np.ndarray] = None,
    return_lse: bool = False,
):
    """Merges partial attention results over disjoint key chunks by their log-sum-exp
    (flash-decoding): ``part_out`` float32 ``[n_parts, n_rows, head_dim]`` (rows of
    contiguous elements; a 4-D ``[n_parts, n_q, n_heads, head_dim]`` is taken as
    ``n_q * n_heads`` rows when contiguous), ``part_lse`` float32 ``[n_parts, n_rows]``.
    Returns ``out`` ``[n_rows, head_dim]`` of ``out_dtype`` (and ``out_lse``
    ``[n_rows]`` with ``return_lse``)."""
    fn = "tkr_attention_merge"
    if not isinstance(part_out, np.ndarray) or part_out.dtype != np.float32:
        raise invalid(fn, "part_out must be a float32 numpy array")
    if part_out.ndim == 4:
        part_out = np.ascontiguousarray(part_out).reshape(part_out.shape[0], -1, part_out.shape[3])
    if part_out.ndim != 3:
        raise invalid(fn, f"part_out must be 3-D [n_parts, n_rows, head_dim], got {part_out.shape}")
    p, r, d = part_out.shape
    lay = _layout((p, r, d), part_out.strides, 4) if part_out.flags.aligned else None
    if lay is None:
        part_out = np.ascontiguousarray(part_out)
        lay = _layout((p, r, d), part_out.strides, 4)
    ps, rs = lay
    if r <= 1:
        rs = d
    if p <= 1:
        ps = r * rs
    if not isinstance(part_lse, np.ndarray) or part_lse.dtype != np.float32:
        raise invalid(fn, "part_lse must be a float32 numpy array")
    if part_lse.ndim == 3:
        part_lse = np.ascontiguousarray(part_lse).reshape(part_lse.shape[0], -1)
    if part_lse.shape != (p, r):
        raise invalid(fn, f"part_lse must have shape {(p, r)}, got {part_lse.shape}")
    if r > 1 and part_lse.strides[1] != 4 or part_lse.strides[0] < 0 or part_lse.strides[0] % 4 or not part_lse.flags.aligned:
        part_lse = np.ascontiguousarray(part_lse)
    ls = part_lse.strides[0] // 4 if p > 1 else r
    if out_dtype not in DTYPE_CODES:
        raise invalid(fn, f"out_dtype must be one of {sorted(DTYPE_CODES)}, not {out_dtype!r}")
    ocode = DTYPE_CODES[out_dtype]
    odt = _np_dtype(ocode, np.dtype(np.float32))
    if out is None:
        out = np.empty((r, d), dtype=odt)
    else:
        if out.dtype == np.uint16 and ocode != TKR_DTYPE_F32:
            odt = out.dtype
    o3 = out.reshape(r, 1, d) if isinstance(out, np.ndarray) and out.ndim == 2 else out
    ots, _ = _out_tensor(o3, fn, (r, 1, d), odt)
    olse = np.empty(r, dtype=np.float32) if return_lse else None
    st = _merge(ocode, _ptr(part_out), p, r, d, ps, rs, _ptr(part_lse), ls, _ptr(out), ots, _ptr(olse))
    check(st, fn)
    return (out, olse) if return_lse else out


def key_block_summary(
    k,
    block_size: int,
    *,
    block_begin: int = 0,
    block_end: Optional[int] = None,
    kmin: Optional[np.ndarray] = None,
    kmax: Optional[np.ndarray] = None,
    dtype: Optional[str] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Quest summaries: the elementwise min and max of ``k`` ``[n_k, n_heads_kv,
    head_dim]`` over each key block of ``block_size`` keys, per KV head, as float32
    ``[n_blocks, n_heads_kv, head_dim]`` (exact). Only blocks ``block_begin ..
    block_end`` (default: all) are written into ``kmin`` / ``kmax`` (allocated, zero,
    when not given; C-contiguous float32 of at least ``block_end`` blocks)."""
    fn = "tkr_key_block_summary"
    k, code, kp, n_k, g, d, kts, khs = _tensor(k, fn, "k", dtype)
    bs = int(block_size)
    if bs < 0 or int(block_begin) < 0:
        raise invalid(fn, "block_size and block_begin must be >= 0")
    n_blocks = -(-n_k // bs) if bs > 0 else 0
    end = n_blocks if block_end is None else int(block_end)
    if end < 0:
        raise invalid(fn, "block_end must be >= 0")
    res = []
    for name, a in (("kmin", kmin), ("kmax", kmax)):
        if a is None:
            a = np.zeros((max(end, 0), g, d), dtype=np.float32)
        elif not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous \
                or not a.flags.writeable or a.size < end * g * d:
            raise invalid(fn, f"{name} must be a writeable C-contiguous float32 array of at least {end * g * d} floats")
        res.append(a)
    st = _summary(code, kp, n_k, g, d, kts, khs, bs, int(block_begin), end, _ptr(res[0]), _ptr(res[1]))
    check(st, fn)
    return res[0], res[1]


def _summaries(kmin, kmax, fn):
    for name, a in (("kmin", kmin), ("kmax", kmax)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 3:
            raise invalid(fn, f"{name} must be a float32 [n_blocks, n_heads_kv, head_dim] array")
    if kmin.shape != kmax.shape:
        raise invalid(fn, f"kmin {kmin.shape} and kmax {kmax.shape} differ")
    return np.ascontiguousarray(kmin), np.ascontiguousarray(kmax)


def key_block_bound(q, kmin, kmax, *, out: Optional[np.ndarray] = None, dtype: Optional[str] = None):
    """Quest upper bounds of ``q . k`` per query row and key block: float32
    ``[n_q, n_heads_q, n_blocks]`` (never below the exact block maximum)."""
    fn = "tkr_key_block_bound"
    q, code, qp, n_q, hq, d, qts, qhs = _tensor(q, fn, "q", dtype)
    kmin, kmax = _summaries(kmin, kmax, fn)
    nb, g, dk = kmin.shape
    if dk != d:
        raise invalid(fn, f"summaries have head_dim {dk}, q has {d}")
    if out is None:
        out = np.empty((n_q, hq, nb), dtype=np.float32)
    elif not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (n_q, hq, nb) \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise invalid(fn, f"out must be a writeable C-contiguous float32 array of shape {(n_q, hq, nb)}")
    st = _bound(code, qp, n_q, hq, d, qts, qhs, _ptr(kmin), _ptr(kmax), nb, g, _ptr(out), nb)
    check(st, fn)
    return out


class QuestBlocks(NamedTuple):
    """:func:`quest_select_blocks`: ``block_ids`` (uint32, ``n_q * n_heads_q * k``),
    ``block_offsets`` (``n_q * n_heads_q + 1``; list ``h * n_q + i``) and ``k``
    (``min(k, n_blocks)``). Pass them to :func:`attention` with
    ``block_lists="per_q_head"``, ``query_block_size=1``."""

    block_ids: np.ndarray
    block_offsets: np.ndarray
    k: int


def quest_select_blocks(
    q, kmin, kmax, k: int, *, keep_first: int = 0, keep_last: int = 0, dtype: Optional[str] = None
) -> QuestBlocks:
    """Quest block selection: the top-``k`` key blocks by bound for every query row,
    plus the first ``keep_first`` and last ``keep_last`` blocks, ids ascending."""
    fn = "tkr_quest_select_blocks"
    q, code, qp, n_q, hq, d, qts, qhs = _tensor(q, fn, "q", dtype)
    kmin, kmax = _summaries(kmin, kmax, fn)
    nb, g, dk = kmin.shape
    if dk != d:
        raise invalid(fn, f"summaries have head_dim {dk}, q has {d}")
    if int(k) < 0 or int(keep_first) < 0 or int(keep_last) < 0:
        raise invalid(fn, "k, keep_first and keep_last must be >= 0")
    k_eff = min(int(k), nb)
    ids = np.empty(n_q * hq * k_eff, dtype=np.uint32)
    offs = np.empty(n_q * hq + 1, dtype=np.uintp)
    out_k = c_size_t()
    st = _quest(
        code, qp, n_q, hq, d, qts, qhs, _ptr(kmin), _ptr(kmax), nb, g, int(k), int(keep_first),
        int(keep_last), _ptr(ids), _ptr(offs), ctypes.byref(out_k),
    )
    check(st, fn)
    return QuestBlocks(ids, offs.astype(np.uint64), int(out_k.value))
