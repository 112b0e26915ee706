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

from ._arrays import (
    BFLOAT16,
    DTYPE_CODES,
    ELEMENT_CODES,
    F32,
    NDARRAY,
    U32,
    UINTP,
    addr,
    cptr,
    element_code,
    index,
    invalid,
    options,
    ptr_or_null,
    slots,
    wptr,
)
from ._ffi import (
    TKR_DTYPE_F16,
    TKR_DTYPE_F32,
    TKR_STATUS_BAD_STRIDE,
    TKR_STATUS_OUT_OF_RANGE,
    TokenrouteError,
    constant,
    declare,
)

TKR_ATTENTION_CAUSAL = constant("TKR_ATTENTION_CAUSAL", 1)
TKR_ATTENTION_BF16_DOT = constant("TKR_ATTENTION_BF16_DOT", 2)
TKR_ATTENTION_WINDOW_RIGHT = constant("TKR_ATTENTION_WINDOW_RIGHT", 4)
TKR_KEYS_DENSE = constant("TKR_KEYS_DENSE", 0)
TKR_KEYS_INDICES = constant("TKR_KEYS_INDICES", 1)
TKR_KEYS_BLOCKS = constant("TKR_KEYS_BLOCKS", 2)
TKR_KEYS_SEQ_INDICES = constant("TKR_KEYS_SEQ_INDICES", 3)
TKR_CAUSAL_ALIGN_POSITIONS = constant("TKR_CAUSAL_ALIGN_POSITIONS", 0)
TKR_CAUSAL_ALIGN_TOP_LEFT = constant("TKR_CAUSAL_ALIGN_TOP_LEFT", 1)
TKR_CAUSAL_ALIGN_BOTTOM_RIGHT = constant("TKR_CAUSAL_ALIGN_BOTTOM_RIGHT", 2)
TKR_BLOCK_LISTS_SHARED = constant("TKR_BLOCK_LISTS_SHARED", 0)
TKR_BLOCK_LISTS_PER_KV_HEAD = constant("TKR_BLOCK_LISTS_PER_KV_HEAD", 1)
TKR_BLOCK_LISTS_PER_Q_HEAD = constant("TKR_BLOCK_LISTS_PER_Q_HEAD", 2)

CAUSAL_ALIGNS = {
    "top_left": TKR_CAUSAL_ALIGN_TOP_LEFT,
    "bottom_right": TKR_CAUSAL_ALIGN_BOTTOM_RIGHT,
}

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
        ("index_offsets", c_void_p),
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
        ("causal_align", c_uint32),
        ("batch", c_void_p),
        ("sinks", c_void_p),
        ("window_right", c_uint32),
        ("reserved0", c_uint32),
        ("softcap", c_float),
        ("alibi_slopes", c_void_p),
        ("bias", c_void_p),
        ("bias_head_stride", c_size_t),
        ("bias_query_stride", c_size_t),
        ("bias_batch_stride", c_size_t),
        ("v_head_dim", c_size_t),
        ("bias_dtype", c_uint32),
    ]


class AttentionBatch(ctypes.Structure):
    """``struct tkr_attention_batch`` (field for field; tests compare with the header)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("n_seqs", c_size_t),
        ("cu_seqlens_q", c_void_p),
        ("cu_seqlens_k", c_void_p),
        ("q_batch_stride", c_size_t),
        ("k_batch_stride", c_size_t),
        ("v_batch_stride", c_size_t),
        ("out_batch_stride", c_size_t),
        ("lse_batch_stride", c_size_t),
        ("mass_batch_stride", c_size_t),
        ("q_positions_batch_stride", c_size_t),
        ("k_positions_batch_stride", c_size_t),
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
_batch_init = declare("tkr_attention_batch_init", c_uint32, [POINTER(AttentionBatch)])
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
    if dtype is None and type(a) is NDARRAY and a.ndim == 3:
        code = ELEMENT_CODES.get(a.dtype)
        p = cptr(a)
        if code and p:
            n, h, d = a.shape
            return a, code, p, n, h, d, h * d, d
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
    return a, code, ptr_or_null(a), n, h, d, lay[0], lay[1]


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
    """A C-contiguous uint32 array of integer indices (range-checked when converted)."""
    if type(a) is NDARRAY and a.dtype is U32 and a.ndim == 1 and cptr(a):
        return a
    x = np.asarray(a).reshape(-1)
    if x.size and not np.issubdtype(x.dtype, np.integer):
        raise invalid(fn, f"{name} must hold integers, got {x.dtype}")
    if x.size and x.dtype != np.uint32 and (x.min() < 0 or x.max() > 0xFFFFFFFF):
        raise TokenrouteError(TKR_STATUS_OUT_OF_RANGE, fn, f"{name} holds a value outside [0, 2^32)")
    return np.ascontiguousarray(x, dtype=np.uint32)


_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__


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
    window_right: Optional[int] = None,
    q_positions=None,
    k_positions=None,
    causal_align: Optional[str] = None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    index_offsets=None,
    sinks=None,
    scale: float = 0.0,
    softcap: Optional[float] = None,
    alibi_slopes=None,
    bias=None,
    bf16_dot: bool = False,
    out_dtype: Optional[str] = None,
    out: Optional[np.ndarray] = None,
    return_lse: bool = False,
    return_mass: bool = False,
    mass: Optional[np.ndarray] = None,
    mass_per_head: bool = False,
    dtype: Optional[str] = None,
    out_lse: Optional[np.ndarray] = None,
):
    """Attention of queries over a subset of keys (``tkr_attention``).

    ``q``: ``[n_q, n_heads_q, head_dim]``; ``k``: ``[n_k, n_heads_kv, head_dim]``;
    ``v``: ``[n_k, n_heads_kv, v_head_dim]``, all of the same element type;
    ``n_heads_q`` a multiple of ``n_heads_kv`` (GQA). ``v_head_dim`` (v's last
    dimension) may differ from ``head_dim`` (multi-head latent attention: 192 and 128,
    no zero-padding of v); the output is ``[n_q, n_heads_q, v_head_dim]``.

    Keys: dense by default; ``indices`` (K rows, shared by every query and head) or the
    block form (``block_size``, ``query_block_size``, ``block_offsets``, ``block_ids``,
    ``block_lists`` = ``"shared"`` / ``"per_kv_head"`` / ``"per_q_head"``).

    Masking: ``causal`` and/or ``window`` (> 0) by original positions; ``q_positions``
    (``n_q``) and ``k_positions`` (``n_k``) default to the last ``n_q`` positions of
    ``range(n_k)`` (queries at the end of the sequence) and ``range(n_k)``.
    ``window_right``: a right extent (keys up to ``q_pos + window_right`` visible;
    ``2**32 - 1``: unlimited); then ``window`` no longer implies causal masking
    (two-sided local windows; ``causal`` still limits the right side).
    ``causal_align``: ``"top_left"`` (query i at position i, key j at j: ONNX and
    PyTorch ``is_causal``) or ``"bottom_right"`` (query i at ``i + n_k - n_q``) instead
    of positions.
    ``scale``: 0 means ``1 / sqrt(head_dim)``. ``bf16_dot``: TKR_ATTENTION_BF16_DOT.
    ``softcap``: a logit softcap ``c`` (Gemma 2): logits become
    ``c * tanh(scale * q.k / c)``; ``c`` finite and > 0.
    ``bias``: an additive bias broadcastable to ``[n_heads_q, n_q, n_k]``
    (relative-position biases, float masks with ``-inf``; broadcast axes cost no copy;
    not with ``cu_seqlens``): float32, float16 or ``ml_dtypes.bfloat16`` read as they
    are (16-bit values give the result of the float32 bias with the same values), any
    other type converted to float32.
    ``alibi_slopes``: ``n_heads_q`` ALiBi slopes (BLOOM, MPT): ``-slope[h] * |q_pos -
    k_pos|`` joins each logit (positions as for masking, also without ``causal``).
    ``sinks``: ``n_heads_q`` sink logits (float32; each joins its head's softmax
    denominator without a value; not with the mass).

    Ragged batches (``cu_seqlens_q``, ``cu_seqlens_k``: ``n_seqs + 1`` nondecreasing
    row offsets each): sequences packed back to back in q/out (query rows) and k/v
    (key rows), each attending over its own keys in one call, bit-identical to separate
    calls; lse rows follow the queries, mass entries the keys. Keys per sequence: dense,
    ``indices`` (shared, local rows), ``indices`` with ``index_offsets`` (``n_seqs + 1``
    offsets: list b for sequence b), or block lists back to back. Masking without
    positions uses ``causal_align`` (default ``"bottom_right"``) per sequence.
    ``out_dtype``: None (the input's), ``"f32"``, ``"f16"`` or ``"bf16"``; ``out``: a
    caller array of that type and shape (allocated when not given).

    ``return_mass``: per-key attention mass (the sum over queries and heads of the
    softmax probability), float32 ``[n_k]`` summed over heads, or
    ``[n_heads_kv, n_k]`` with ``mass_per_head``. ``mass``: a caller float32 array of
    that shape to ADD into (implies ``return_mass``). ``out_lse``: a caller float32
    ``[n_q, n_heads_q]`` array for the log-sum-exp (implies ``return_lse``).

    Returns ``out``, or an :class:`AttentionResult` ``(out, lse, mass)`` when
    ``return_lse`` or the mass is wanted. With ``out`` (and ``out_lse`` / ``mass``)
    given, nothing is allocated.
    """
    fn = "tkr_attention"
    code = None
    if dtype is None and type(q) is NDARRAY and type(k) is NDARRAY and type(v) is NDARRAY:
        # Fast path: C-contiguous q, k, v of one element type and matching shapes.
        dt = q.dtype
        if dt is k.dtype and dt is v.dtype and q.ndim == 3 and k.ndim == 3 and v.ndim == 3:
            qp, kp, vp = cptr(q), cptr(k), cptr(v)
            n_q, hq, d = q.shape
            n_k, hkv, dk = k.shape
            n_v, hv, dv = v.shape
            if qp and kp and vp and dk == d and n_v == n_k and hv == hkv and dv:
                code = ELEMENT_CODES.get(dt)
                qts, qhs = hq * d, d
                kts, khs = hkv * d, d
                vts, vhs = hkv * dv, dv
    if code is None:
        q, code, qp, n_q, hq, d, qts, qhs = _tensor(q, fn, "q", dtype)
        k, kcode, kp, n_k, hkv, dk, kts, khs = _tensor(k, fn, "k", dtype)
        v, vcode, vp, n_v, hv, dv, vts, vhs = _tensor(v, fn, "v", dtype)
        if not (code == kcode == vcode) or q.dtype != k.dtype or q.dtype != v.dtype:
            raise invalid(fn, f"q, k and v must share an element type ({q.dtype}, {k.dtype}, {v.dtype})")
        if n_v != n_k or hv != hkv:
            raise invalid(fn, f"k {k.shape} and v {v.shape} must have the same tokens and heads")
        if dk != d:
            raise invalid(fn, f"q has head_dim {d} but k has {dk}")
        if dv == 0 and d != 0:
            # (tkr_attention reads v_head_dim = 0 as head_dim.)
            raise invalid(fn, "v has head_dim 0")
    alive = batch = None
    if cu_seqlens_q is not None or cu_seqlens_k is not None:
        batch, cu_q = _ragged(fn, cu_seqlens_q, cu_seqlens_k)
        if causal_align is None and q_positions is None and k_positions is None:
            causal_align = "bottom_right"
    else:
        cu_q = None
    if indices is None and block_size is None and query_block_size is None and (
        block_offsets is None and block_ids is None and index_offsets is None
    ):
        keys = None
    else:
        keys, alive = _keys(fn, indices, block_size, query_block_size, block_offsets, block_ids,
                            block_lists, n_q, hq, hkv, index_offsets, cu_q)
    want_lse = return_lse or out_lse is not None
    want_mass = return_mass or mass is not None
    if (
        causal or window or scale or bf16_dot or want_lse or want_mass or out_dtype is not None
        or q_positions is not None or k_positions is not None or causal_align is not None
        or batch is not None or sinks is not None or window_right is not None
        or softcap is not None or alibi_slopes is not None or bias is not None or dv != d
    ):
        opts = options(AttentionOptions)
        opts.v_head_dim = dv
        if causal_align is not None:
            if causal_align not in CAUSAL_ALIGNS:
                raise invalid(fn, f"causal_align must be one of {sorted(CAUSAL_ALIGNS)}, not {causal_align!r}")
            opts.causal_align = CAUSAL_ALIGNS[causal_align]
        if batch is not None:
            opts.batch = addr(batch[0])
        if window_right is not None:
            r = index(window_right, fn, "window_right")
            if r > 0xFFFFFFFF:
                raise invalid(fn, f"window_right must be in [0, 2^32), got {window_right}")
            opts.flags |= TKR_ATTENTION_WINDOW_RIGHT
            opts.window_right = r
        if softcap is not None:
            # The library refuses 0, negatives, NaN and infinities (0 would mean none).
            opts.softcap = -1.0 if softcap == 0 else softcap
        if bias is not None:
            bias = _bias(fn, bias, hq, n_q, n_k)
            size = bias.dtype.itemsize
            opts.bias = bias.ctypes.data
            opts.bias_dtype = ELEMENT_CODES[bias.dtype]
            opts.bias_head_stride = bias.strides[0] // size
            opts.bias_query_stride = bias.strides[1] // size
        if alibi_slopes is not None:
            alibi_slopes = np.ascontiguousarray(alibi_slopes, dtype=np.float32).reshape(-1)
            if len(alibi_slopes) != hq:
                raise invalid(fn, f"alibi_slopes needs {hq} entries (one per query head), got {len(alibi_slopes)}")
            opts.alibi_slopes = addr(alibi_slopes)
        if sinks is not None:
            sinks = np.ascontiguousarray(sinks, dtype=np.float32).reshape(-1)
            if len(sinks) != hq:
                raise invalid(fn, f"sinks needs {hq} entries (one per query head), got {len(sinks)}")
            opts.sinks = addr(sinks)
        positions = _attention_options(opts, fn, causal, window, scale, bf16_dot, q_positions,
                                       k_positions, n_q, n_k)
        if out_dtype is not None and out_dtype not in DTYPE_CODES:
            raise invalid(fn, f"out_dtype must be one of {sorted(DTYPE_CODES)}, not {out_dtype!r}")
        ocode = code if out_dtype is None else DTYPE_CODES[out_dtype]
        odt = q.dtype if out_dtype is None else _np_dtype(ocode, q.dtype)
        opts.out_dtype = ocode
    else:
        opts = positions = None
        ocode, odt = code, q.dtype
    if out is None:
        out = np.empty((n_q, hq, dv), dtype=odt)
        op = addr(out)
        ots, ohs = hq * dv, dv
    elif type(out) is NDARRAY and out.dtype is odt and out.shape == (n_q, hq, dv) and (op := wptr(out)):
        ots, ohs = hq * dv, dv
    else:
        op = addr(out) if isinstance(out, np.ndarray) else 0
        if isinstance(out, np.ndarray) and out.dtype == np.uint16 and ocode != TKR_DTYPE_F32:
            odt = out.dtype  # bit patterns of the 16-bit output type
        ots, ohs = _out_tensor(out, fn, (n_q, hq, dv), odt)
    lse = None
    if want_lse:
        if out_lse is None:
            lse = np.empty((n_q, hq), dtype=np.float32)
        else:
            lse = out_lse
            _out_f32(lse, fn, "out_lse", (n_q, hq))
        opts.lse = addr(lse)
        opts.lse_token_stride = hq
    if want_mass:
        shape = (hkv, n_k) if mass_per_head else (n_k,)
        if mass is None:
            mass = np.zeros(shape, dtype=np.float32)
        else:
            _out_f32(mass, fn, "mass", shape)
        if not (mass_per_head and n_k == 0):
            opts.mass = addr(mass)
            opts.mass_head_stride = n_k if mass_per_head else 0
    st = _attention(code, qp, n_q, hq, d, qts, qhs, kp, vp, n_k, hkv, kts, khs, vts, vhs,
                    keys, opts, op, ots, ohs)
    del alive, positions, batch, sinks
    if st:
        raise TokenrouteError(st, fn)
    if want_lse or want_mass:
        return _new_tuple(AttentionResult, (out, lse, mass if want_mass else None))
    return out


def _out_f32(a, fn, name, shape) -> None:
    """Checks a caller's C-contiguous float32 output of exactly ``shape``."""
    if type(a) is NDARRAY and a.dtype is F32 and a.shape == shape and wptr(a):
        return
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != shape:
        raise invalid(fn, f"{name} must be a float32 array of shape {shape}")
    if a.size and not (a.flags.c_contiguous and a.flags.writeable and a.flags.aligned):
        raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, f"{name} must be C-contiguous and writeable")


def _offsets(a, fn, name):
    """A C-contiguous size_t array of non-negative integer offsets."""
    if type(a) is NDARRAY and a.dtype is UINTP and a.ndim == 1 and cptr(a):
        return a
    x = np.asarray(a).reshape(-1)
    if x.size and (not np.issubdtype(x.dtype, np.integer) or x.min() < 0):
        raise invalid(fn, f"{name} must be non-negative integers")
    return np.ascontiguousarray(x, dtype=np.uintp)


def _ragged(fn, cu_seqlens_q, cu_seqlens_k):
    """((AttentionBatch, its arrays), cu_seqlens_q) of a ragged batch."""
    if cu_seqlens_q is None or cu_seqlens_k is None:
        raise invalid(fn, "a ragged batch needs both cu_seqlens_q and cu_seqlens_k")
    cq = _offsets(cu_seqlens_q, fn, "cu_seqlens_q")
    ck = _offsets(cu_seqlens_k, fn, "cu_seqlens_k")
    if len(cq) == 0 or len(cq) != len(ck):
        raise invalid(fn, "cu_seqlens_q and cu_seqlens_k need n_seqs + 1 entries each")
    b = options(AttentionBatch)
    b.n_seqs = len(cq) - 1
    b.cu_seqlens_q = addr(cq)
    b.cu_seqlens_k = addr(ck)
    return (b, cq, ck), cq


def _keys(fn, indices, block_size, query_block_size, block_offsets, block_ids, block_lists,
          n_q, hq, hkv, index_offsets=None, cu_q=None):
    """(AttentionKeys, arrays it points into) of the index or block form."""
    keys = options(AttentionKeys)
    blocky = any(x is not None for x in (block_size, query_block_size, block_offsets, block_ids))
    if indices is not None and blocky:
        raise invalid(fn, "give either indices or the block form, not both")
    if index_offsets is not None and indices is None:
        raise invalid(fn, "index_offsets needs indices")
    if indices is not None:
        ix = _u32(indices, fn, "indices")
        keys.kind = TKR_KEYS_INDICES
        keys.indices = addr(ix)
        keys.n_indices = len(ix)
        if index_offsets is None:
            return keys, ix
        io = _offsets(index_offsets, fn, "index_offsets")
        keys.kind = TKR_KEYS_SEQ_INDICES
        keys.index_offsets = addr(io)
        return keys, (ix, io)
    if any(x is None for x in (block_size, query_block_size, block_offsets, block_ids)):
        raise invalid(fn, "the block form needs block_size, query_block_size, block_offsets and block_ids")
    if block_lists not in BLOCK_LISTS:
        raise invalid(fn, f"block_lists must be one of {sorted(BLOCK_LISTS)}, not {block_lists!r}")
    bs = index(block_size, fn, "block_size")
    qbs = index(query_block_size, fn, "query_block_size")
    ids = _u32(block_ids, fn, "block_ids")
    offs = _offsets(block_offsets, fn, "block_offsets")
    groups = {"shared": 1, "per_kv_head": hkv, "per_q_head": hq}[block_lists]
    if cu_q is None:
        n_lists = -(-n_q // max(qbs, 1)) * groups
    else:
        lens = np.diff(cu_q.astype(np.int64))
        if (lens < 0).any():
            raise invalid(fn, "cu_seqlens_q must be nondecreasing")
        n_lists = int((-(-lens // max(qbs, 1))).sum()) * groups
    if len(offs) != n_lists + 1:
        raise invalid(fn, f"block_offsets must have {n_lists + 1} entries, got {len(offs)}")
    keys.kind = TKR_KEYS_BLOCKS
    keys.block_lists = BLOCK_LISTS[block_lists]
    keys.block_size = bs
    keys.query_block_size = qbs
    keys.block_offsets = addr(offs)
    keys.block_ids = addr(ids)
    keys.n_block_ids = len(ids)
    return keys, (ids, offs)


#: 0, 1, 2, ... as uint32 (read-only), grown on demand: the default positions.
_IOTA = np.zeros(0, np.uint32)


def _iota(n: int) -> np.ndarray:
    """A read-only uint32 array of at least n entries 0, 1, 2, ..."""
    global _IOTA
    iota = _IOTA
    if len(iota) < n:
        iota = np.arange(max(n, 2 * len(iota)), dtype=np.uint32)
        iota.flags.writeable = False
        _IOTA = iota
    return iota


def _bias(fn, bias, hq, n_q, n_k):
    """A view of ``bias`` broadcast to ``[hq, n_q, n_k]`` whose keys are contiguous and
    whose other strides are non-negative multiples of the element size (broadcast axes
    have stride 0). float16 and bfloat16 arrays stay as they are (the library reads
    them); anything else becomes float32. Copies only when the given layout cannot be
    described so."""
    b = np.asarray(bias)
    if b.dtype not in ELEMENT_CODES:
        b = b.astype(np.float32)
    size = b.dtype.itemsize
    try:
        b = np.broadcast_to(b, (hq, n_q, n_k))
    except ValueError:
        raise invalid(fn, f"bias of shape {np.shape(bias)} does not broadcast to {(hq, n_q, n_k)}") from None
    s = b.strides
    if (n_k > 1 and s[2] != size) or s[0] < 0 or s[1] < 0 or s[0] % size or s[1] % size:
        b = np.ascontiguousarray(b)
    return b


def _attention_options(opts, fn, causal, window, scale, bf16_dot, q_positions, k_positions,
                       n_q, n_k):
    """Sets scale, flags, window and positions; returns the arrays the positions point into."""
    try:
        opts.scale = scale
    except TypeError:
        raise invalid(fn, f"scale must be a number, got {scale!r}") from None
    if causal:
        opts.flags |= TKR_ATTENTION_CAUSAL
    if bf16_dot:
        opts.flags |= TKR_ATTENTION_BF16_DOT
    w = index(window, fn, "window")
    if w > 0xFFFFFFFF:
        raise invalid(fn, f"window must be in [0, 2^32), got {window}")
    opts.window = w
    # Positions serve masking and ALiBi (set by the caller before this).
    masked = causal or w or opts.flags & TKR_ATTENTION_WINDOW_RIGHT or opts.alibi_slopes
    if not (masked or q_positions is not None or k_positions is not None):
        return None
    if opts.causal_align and q_positions is None and k_positions is None:
        return None  # implicit positions
    if q_positions is None or k_positions is None:
        if max(n_k, n_q) > 0xFFFFFFFF:
            raise invalid(fn, "positions are uint32: at most 2^32 - 1 keys and queries")
        # Defaults: keys at 0..n_k-1, queries at the last n_q positions (as uint32; a
        # count of 2^32 or more is refused by the library).
        iota = _iota(max(n_k, n_q))
    if q_positions is None:
        qpos = iota[max(n_k - n_q, 0): max(n_k - n_q, 0) + n_q]
    else:
        qpos = _u32(q_positions, fn, "q_positions")
    kpos = iota[:n_k] if k_positions is None else _u32(k_positions, fn, "k_positions")
    if len(qpos) != n_q or len(kpos) != n_k:
        raise invalid(fn, f"q_positions needs {n_q} and k_positions {n_k} entries")
    opts.q_positions = addr(qpos)
    opts.k_positions = addr(kpos)
    return qpos, kpos


def attention_merge(
    part_out,
    part_lse,
    *,
    out_dtype: str = "f32",
    out: Optional[np.ndarray] = None,
    return_lse: bool = False,
    out_lse: Optional[np.ndarray] = None,
):
    """Merges partial attention results over disjoint key chunks by their log-sum-exp
    (flash-decoding): ``part_out`` float32 ``[n_parts, n_rows, head_dim]`` (rows of
    contiguous elements; a 4-D ``[n_parts, n_q, n_heads, head_dim]`` is taken as
    ``n_q * n_heads`` rows when contiguous), ``part_lse`` float32 ``[n_parts, n_rows]``
    (or ``[n_parts, n_q, n_heads]``). Returns ``out`` ``[n_rows, head_dim]`` of
    ``out_dtype`` (and ``out_lse`` ``[n_rows]`` with ``return_lse``; a caller's
    float32 ``out_lse`` implies it)."""
    fn = "tkr_attention_merge"
    ocode = DTYPE_CODES.get(out_dtype) if type(out_dtype) is str else None
    if ocode is None:
        raise invalid(fn, f"out_dtype must be one of {sorted(DTYPE_CODES)}, not {out_dtype!r}")
    nd = part_out.ndim if type(part_out) is NDARRAY else 0
    op = 0
    if (
        (nd == 3 or nd == 4) and part_out.dtype is F32 and type(part_lse) is NDARRAY
        and part_lse.dtype is F32 and part_lse.ndim == nd - 1
    ):
        if nd == 3:
            p, r, d = part_out.shape
        else:
            p, nq, nh, d = part_out.shape
            r = nq * nh
        lp = cptr(part_lse)
        if lp and part_lse.size == p * r and len(part_lse) == p:
            op, ps, rs, ls = cptr(part_out), r * d, d, r
    if not op:
        part_out, op, p, r, d, ps, rs, part_lse, lp, ls = _merge_inputs(fn, part_out, part_lse)
    odt = F32 if ocode == TKR_DTYPE_F32 else _np_dtype(ocode, F32)
    if out is None:
        out = np.empty((r, d), dtype=odt)
        outp, ots = addr(out), d
    elif type(out) is NDARRAY and out.dtype is odt and out.shape == (r, d) and (outp := wptr(out)):
        ots = d
    else:
        outp = addr(out) if isinstance(out, np.ndarray) else 0
        if isinstance(out, np.ndarray) and out.dtype == np.uint16 and ocode != TKR_DTYPE_F32:
            odt = out.dtype
        o3 = out.reshape(r, 1, d) if isinstance(out, np.ndarray) and out.ndim == 2 else out
        ots, _ = _out_tensor(o3, fn, (r, 1, d), odt)
    if out_lse is not None:
        _out_f32(out_lse, fn, "out_lse", (r,))
        return_lse = True
    elif return_lse:
        out_lse = np.empty(r, dtype=np.float32)
    st = _merge(ocode, op, p, r, d, ps, rs, lp, ls, outp, ots,
                addr(out_lse) if return_lse else None)
    if st:
        raise TokenrouteError(st, fn)
    return (out, out_lse) if return_lse else out


def _merge_inputs(fn, part_out, part_lse):
    """The general checks and copies of :func:`attention_merge`'s inputs: (part_out,
    pointer, n_parts, n_rows, head_dim, part stride, row stride, part_lse, pointer, lse
    part stride)."""
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
    if (r > 1 and part_lse.strides[1] != 4 or part_lse.strides[0] < 0 or part_lse.strides[0] % 4
            or not part_lse.flags.aligned):
        part_lse = np.ascontiguousarray(part_lse)
    ls = part_lse.strides[0] // 4 if p > 1 else r
    return part_out, ptr_or_null(part_out), p, r, d, ps, rs, part_lse, ptr_or_null(part_lse), ls


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
    bs = block_size if type(block_size) is int and block_size >= 0 else index(block_size, fn, "block_size")
    begin = block_begin if type(block_begin) is int and block_begin >= 0 else index(
        block_begin, fn, "block_begin")
    end = (-(-n_k // bs) if bs > 0 else 0) if block_end is None else index(block_end, fn, "block_end")
    need = end * g * d
    if kmin is None:
        kmin = np.zeros((end, g, d), dtype=np.float32)
        lo = addr(kmin)
    else:
        lo = _summary_out(kmin, fn, "kmin", need)
    if kmax is None:
        kmax = np.zeros((end, g, d), dtype=np.float32)
        hi = addr(kmax)
    else:
        hi = _summary_out(kmax, fn, "kmax", need)
    st = _summary(code, kp, n_k, g, d, kts, khs, bs, begin, end, lo, hi)
    if st:
        raise TokenrouteError(st, fn)
    return kmin, kmax


def _summary_out(a, fn, name, need) -> int:
    """Pointer of a caller's kmin / kmax: writeable C-contiguous float32, >= need floats."""
    if type(a) is NDARRAY and a.dtype is F32 and a.size >= need:
        p = wptr(a)
        if p:
            return p
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous \
            or not a.flags.writeable or a.size < need or not a.flags.aligned:
        raise invalid(fn, f"{name} must be a writeable C-contiguous float32 array of at least {need} floats")
    return addr(a)


def _summaries(kmin, kmax, fn):
    """(kmin, kmax, their pointers, their shape) as C-contiguous float32
    [n_blocks, n_heads_kv, head_dim] arrays (copied when they are not)."""
    if type(kmin) is NDARRAY and type(kmax) is NDARRAY and kmin.dtype is F32 and kmax.dtype is F32:
        lo, hi = cptr(kmin), cptr(kmax)
        shape = kmin.shape
        if lo and hi and len(shape) == 3 and shape == kmax.shape:
            return kmin, kmax, lo, hi, shape
    for name, a in (("kmin", kmin), ("kmax", kmax)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 3:
            raise invalid(fn, f"{name} must be a float32 [n_blocks, n_heads_kv, head_dim] array")
    if kmin.shape != kmax.shape:
        raise invalid(fn, f"kmin {kmin.shape} and kmax {kmax.shape} differ")
    kmin, kmax = np.ascontiguousarray(kmin), np.ascontiguousarray(kmax)
    return kmin, kmax, addr(kmin), addr(kmax), kmin.shape


def key_block_bound(q, kmin, kmax, *, out: Optional[np.ndarray] = None, dtype: Optional[str] = None):
    """Quest upper bounds of ``q . k`` per query row and key block: float32
    ``[n_q, n_heads_q, n_blocks]`` (never below the exact block maximum). ``out``: a
    caller's C-contiguous float32 array of that shape (returned)."""
    fn = "tkr_key_block_bound"
    q, code, qp, n_q, hq, d, qts, qhs = _tensor(q, fn, "q", dtype)
    kmin, kmax, lo, hi, (nb, g, dk) = _summaries(kmin, kmax, fn)
    if dk != d:
        raise invalid(fn, f"summaries have head_dim {dk}, q has {d}")
    if out is None:
        out = np.empty((n_q, hq, nb), dtype=np.float32)
        bp = addr(out)
    elif not (type(out) is NDARRAY and out.dtype is F32 and out.shape == (n_q, hq, nb) and (bp := wptr(out))):
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (n_q, hq, nb) \
                or not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned:
            raise invalid(fn, f"out must be a writeable C-contiguous float32 array of shape {(n_q, hq, nb)}")
    st = _bound(code, qp, n_q, hq, d, qts, qhs, lo, hi, nb, g, bp, nb)
    if st:
        raise TokenrouteError(st, fn)
    return out


class QuestBlocks(NamedTuple):
    """:func:`quest_select_blocks`: ``block_ids`` (uint32, ``n_q * n_heads_q * k``),
    ``block_offsets`` (size_t, i.e. ``np.uintp``, ``n_q * n_heads_q + 1``; list
    ``h * n_q + i``) and ``k`` (``min(k, n_blocks)``). Pass them to :func:`attention`
    with ``block_lists="per_q_head"``, ``query_block_size=1``."""

    block_ids: np.ndarray
    block_offsets: np.ndarray
    k: int


def quest_select_blocks(
    q, kmin, kmax, k: int, *, keep_first: int = 0, keep_last: int = 0, dtype: Optional[str] = None,
    out: Optional[Tuple[np.ndarray, np.ndarray]] = None,
) -> QuestBlocks:
    """Quest block selection: the top-``k`` key blocks by bound for every query row,
    plus the first ``keep_first`` and last ``keep_last`` blocks, ids ascending.
    ``out``: caller arrays ``(block_ids, block_offsets)``, uint32 of at least
    ``n_q * n_heads_q * min(k, n_blocks)`` entries and ``np.uintp`` of
    ``n_q * n_heads_q + 1`` (the result holds views of them)."""
    fn = "tkr_quest_select_blocks"
    q, code, qp, n_q, hq, d, qts, qhs = _tensor(q, fn, "q", dtype)
    kmin, kmax, lo, hi, (nb, g, dk) = _summaries(kmin, kmax, fn)
    if dk != d:
        raise invalid(fn, f"summaries have head_dim {dk}, q has {d}")
    k = k if type(k) is int and k >= 0 else index(k, fn, "k")
    kf = keep_first if type(keep_first) is int and keep_first >= 0 else index(keep_first, fn, "keep_first")
    kl = keep_last if type(keep_last) is int and keep_last >= 0 else index(keep_last, fn, "keep_last")
    n_ids, n_lists = n_q * hq * min(k, nb), n_q * hq + 1
    if out is None:
        ids = np.empty(n_ids, dtype=np.uint32)
        offs = np.empty(n_lists, dtype=np.uintp)
        ip, op = addr(ids), addr(offs)
    else:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise invalid(fn, "out must be a tuple (block_ids, block_offsets)")
        ids, offs = out
        ip = _out_1d(ids, fn, "out block_ids", n_ids, U32)
        op = _out_1d(offs, fn, "out block_offsets", n_lists, UINTP)
        if len(ids) != n_ids:
            ids = ids[:n_ids]
        if len(offs) != n_lists:
            offs = offs[:n_lists]
    count, cp, _, _ = slots()
    st = _quest(code, qp, n_q, hq, d, qts, qhs, lo, hi, nb, g, k, kf, kl, ip, op, count)
    if st:
        raise TokenrouteError(st, fn)
    return _new_tuple(QuestBlocks, (ids, offs, count.value))


def _out_1d(a, fn, name, at_least, dtype) -> int:
    """Pointer of a caller's C-contiguous 1-D output of ``dtype`` with at least
    ``at_least`` entries."""
    if type(a) is NDARRAY and a.dtype is dtype and a.ndim == 1 and len(a) >= at_least:
        p = wptr(a)
        if p:
            return p
    if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1 or len(a) < at_least:
        raise invalid(fn, f"{name} must be a 1-D {np.dtype(dtype)} array of at least {at_least} entries")
    if not (a.flags.c_contiguous and a.flags.writeable and a.flags.aligned):
        raise TokenrouteError(TKR_STATUS_BAD_STRIDE, fn, f"{name} must be C-contiguous and writeable")
    return addr(a)
