"""tokenroute's kernels as PyTorch operators: ``torch.ops.tokenroute.*``.

Importing this module (``import tokenroute.torch``; it needs PyTorch, the rest of the
package does not) registers custom operators in the ``tokenroute`` namespace, built with
``torch.library.custom_op``, each with a fake (meta) implementation so that
``torch.compile(fullgraph=True)`` traces code that calls them:

===========================  =============================================================
operator                     what it computes
===========================  =============================================================
``topk``                     exact top-k of rows of scores -> (values, indices)
``threshold``                tokens with score > tau (+ forced keeps) -> (indices, counts)
``gather_rows``              ``src[idx]`` (any dtype; rows copied bit for bit)
``gather_rows_out``          the same into a given ``out`` (mutates ``out``)
``scatter_rows``             ``dst[idx] = src`` in place (mutates ``dst``)
``scatter_add_rows``         ``h[idx] += gate[:, None] * y`` in place (mutates ``h``)
``route``                    router scores, selection and the selected rows in one call
``attention``                sparse/dense attention -> (out, lse, mass)
``attention_out``            the same into given ``out`` (and ``lse``, ``mass``) tensors
``attention_merge``          LSE merge of partial attention results -> (out, lse)
``key_block_summary``        Quest min/max summaries of key blocks -> (kmin, kmax)
``key_block_summary_update`` recompute blocks ``begin..end`` of given summaries in place
``quest_select_blocks``      Quest top-k key blocks per query row -> (block_ids, offsets)
===========================  =============================================================

The functions of this module with the same names are thin keyword-friendly wrappers that
call ``torch.ops.tokenroute.*`` (so they trace under ``torch.compile`` as well).

Rules common to every operator
------------------------------
- **CPU tensors only**; another device is a :class:`~tokenroute.TokenrouteError` (a
  ``ValueError``) naming the tensor.
- **dtypes**: data tensors of ``torch.float32``, ``torch.float16`` or ``torch.bfloat16``
  (passed to the C library as they are; arithmetic is f32); row copies (gather, scatter)
  take any dtype. Scores for ``topk`` / ``threshold`` are f32 (f16 and bf16 scores are
  widened exactly first). Index arguments may be int32, int64 or uint32 tensors (int64
  lists and non-contiguous lists are converted, after a range check).
- **No copies of data tensors**: strided rows, token-major or head-major views (the q/k/v
  thirds of a fused QKV projection, ``[batch, heads, seq, dim]`` caches transposed to
  ``[seq, heads, dim]``) are handed to the C library in place. A layout it cannot describe
  (an inner stride other than 1, a zero stride from ``expand``, rows that overlap) raises
  ``ValueError`` (status ``TKR_STATUS_BAD_STRIDE``) naming the tensor and the rule, unless
  the operator is called with ``copy=True`` (then such an input is copied first; outputs
  are never copied).
- **Errors** (the library's own checks included) raise :class:`~tokenroute.TokenrouteError`
  before anything is written.
- **Inference only**: calling an operator with an input that requires grad raises a
  ``RuntimeError`` at the call, except ``gather_rows`` whose backward is provided (exact:
  ``grad_src = zeros.index_add_(0, idx, grad_out)``, what ``index_select``'s backward
  computes).
- **Threads**: every operator runs on the library's thread pool (README, "Threads":
  results are bit-identical for every thread count). ``attention`` uses ``threads``
  threads (0: ``torch.get_num_threads()``), growing the pool (``tokenroute.set_num_threads``)
  to that size when it is smaller; the other operators use the pool's size. A 4-D batch
  of evenly spaced views (no copy) with dense or index keys is one batched C call, whose
  small elements run in parallel with one another.
"""

from __future__ import annotations

import ctypes
import math
import threading
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from . import _ffi
from ._ffi import TokenrouteError
from .attend import AttentionBatch, AttentionKeys, AttentionOptions
from .route import RouteOptions
from .select import ThresholdOptions, TopkOptions
from .threads import thread_cap

__all__ = [
    "attention",
    "attention_merge",
    "gather_rows",
    "key_block_summary",
    "quest_select_blocks",
    "route",
    "scatter_add_rows",
    "scatter_rows",
    "threshold",
    "topk",
]

_C = _ffi.CONSTANTS
_OK = _ffi.TKR_STATUS_OK
_INVALID = _ffi.TKR_STATUS_INVALID_ARGUMENT
_BAD_STRIDE = _ffi.TKR_STATUS_BAD_STRIDE
_OUT_OF_RANGE = _ffi.TKR_STATUS_OUT_OF_RANGE
_CODES = {torch.float32: _ffi.TKR_DTYPE_F32, torch.float16: _ffi.TKR_DTYPE_F16,
          torch.bfloat16: _ffi.TKR_DTYPE_BF16}
_BLOCK_LISTS = {
    "shared": _C["TKR_BLOCK_LISTS_SHARED"],
    "per_kv_head": _C["TKR_BLOCK_LISTS_PER_KV_HEAD"],
    "per_q_head": _C["TKR_BLOCK_LISTS_PER_Q_HEAD"],
}
_INDEX_DTYPES = (torch.int32, torch.int64, torch.uint32)
_TOPK_SIZE = ctypes.sizeof(TopkOptions)
_ORDER_SCORE = _C["TKR_TOPK_ORDER_SCORE"]


def _cfn(name: str):
    """A ctypes function object of our own for C function ``name``, with the prototype
    the package declares for it (``_ffi.DECLARATIONS``, checked against the header)."""
    restype, argtypes = _ffi.DECLARATIONS[name]
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, _ffi.lib()))


_topk = _cfn("tkr_topk_f32")
_threshold = _cfn("tkr_threshold_f32")
_gather = _cfn("tkr_gather_rows")
_scatter = _cfn("tkr_scatter_rows")
_scatter_add = _cfn("tkr_scatter_add_rows")
_route = _cfn("tkr_route")
_attention = _cfn("tkr_attention")
_merge = _cfn("tkr_attention_merge")
_summary = _cfn("tkr_key_block_summary")
_quest = _cfn("tkr_quest_select_blocks")


# --- errors and checks -------------------------------------------------------------


def _err(status: int, op: str, detail: str) -> TokenrouteError:
    return TokenrouteError(status, f"tokenroute.{op}", detail)


def _check(status: int, op: str, cname: str) -> None:
    if status != _OK:
        detail = _ffi.lib().tkr_last_error_message().decode(errors="replace")
        raise TokenrouteError(status, f"tokenroute.{op} ({cname})", detail)


def _tensor(t, op: str, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise _err(_INVALID, op, f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise _err(_INVALID, op, f"{name} is on device {t.device}; tokenroute operators take CPU tensors")
    return t


def _float(t, op: str, name: str) -> int:
    _tensor(t, op, name)
    code = _CODES.get(t.dtype)
    if code is None:
        raise _err(_INVALID, op, f"{name} has dtype {t.dtype}; expected torch.float32, torch.float16 or torch.bfloat16")
    return code


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None or t.numel() == 0 else t.data_ptr()


def _rows_ok(t: Tensor) -> bool:
    """Dims 1.. are C-contiguous (a row is contiguous elements) and rows do not overlap."""
    shape, strides = t.shape, t.stride()
    expect = 1
    for i in range(t.dim() - 1, 0, -1):
        if shape[i] != 1 and strides[i] != expect:
            return False
        expect *= shape[i]
    return t.dim() == 0 or shape[0] <= 1 or strides[0] >= max(expect, 1)


def _row_stride(t: Tensor) -> int:
    row = math.prod(t.shape[1:])
    return t.stride(0) if t.dim() and t.shape[0] > 1 else row


def _rows(t: Tensor, op: str, name: str, copy: bool, out: bool = False) -> Tuple[Tensor, int, int, int]:
    """(tensor, rows, row_len, row_stride) of ``t`` seen as rows along dim 0, the other
    dims flattened into the row. A layout the C API cannot describe is copied when
    ``copy`` (inputs only), else refused with a ValueError naming the rule."""
    if t.dim() == 0:
        raise _err(_INVALID, op, f"{name} must have at least one dimension")
    if t.numel() and not _rows_ok(t):
        if copy and not out:
            t = t.contiguous()
        else:
            raise _err(
                _BAD_STRIDE, op,
                f"{name} (shape {tuple(t.shape)}, strides {t.stride()}) cannot be passed without a "
                "copy: each row (dims 1..) must be contiguous elements and rows must not overlap "
                "(stride(0) >= the row length, no zero strides)"
                + (" (outputs are never copied)" if out else "; pass copy=True to copy it"),
            )
    return t, t.shape[0], math.prod(t.shape[1:]), _row_stride(t)


def _heads(t: Tensor, op: str, name: str, copy: bool, out: bool = False) -> Tuple[Tensor, int, int]:
    """(tensor, token stride, head stride) in elements of a ``[n, heads, head_dim]``
    tensor: rows of ``head_dim`` contiguous elements, token-major or head-major, rows
    never overlapping (the C API's rule)."""
    lay = _head_layout(t)
    if lay is None:
        if copy and not out:
            t = t.contiguous()
            lay = _head_layout(t)
        else:
            raise _err(
                _BAD_STRIDE, op,
                f"{name} (shape {tuple(t.shape)}, strides {t.stride()}) cannot be passed without a "
                "copy: the last dim must have stride 1 and the (token, head) rows must not overlap "
                "(token-major: head stride >= head_dim and token stride >= heads * head stride; "
                "head-major: the other way round; no zero strides)"
                + (" (outputs are never copied)" if out else "; pass copy=True to copy it"),
            )
    return t, lay[0], lay[1]


def _head_layout(t: Tensor) -> Optional[Tuple[int, int]]:
    n, h, d = t.shape
    ts, hs, es = t.stride()
    if n * h * d == 0:
        return h * d, d
    if d > 1 and es != 1:
        return None
    if h <= 1:
        hs = d
    if n <= 1:
        ts = h * hs
    if hs >= d and ts >= h * hs - (hs - d):
        return ts, hs
    if ts >= d and hs >= n * ts - (ts - d):
        return ts, hs
    return None


# Cached uint32 ranges (read-only): default positions point into them.
_ARANGE = np.arange(0, dtype=np.uint32)
_ARANGE_LOCK = threading.Lock()


def _arange(n: int) -> np.ndarray:
    global _ARANGE
    a = _ARANGE
    if a.size < n:
        with _ARANGE_LOCK:
            if _ARANGE.size < n:
                b = np.arange(max(n, 2 * _ARANGE.size), dtype=np.uint32)
                b.setflags(write=False)
                _ARANGE = b
            a = _ARANGE
    return a


_SCRATCH = threading.local()


def _scratch_u32(n: int) -> Tuple[np.ndarray, Optional[int]]:
    """This thread's uint32 scratch buffer of at least ``n`` entries, and its address
    (the C calls write indices there; callers copy them out before returning)."""
    a = getattr(_SCRATCH, "u32", None)
    if a is None or a[0].size < n:
        buf = np.empty(max(n, 1024), dtype=np.uint32)
        a = _SCRATCH.u32 = (buf, buf.ctypes.data)
    return a[0], (a[1] if n else None)


def _u32(t, op: str, name: str, limit: Optional[int] = None) -> Tuple[object, Optional[int], int]:
    """(object to keep alive, pointer, count) of an index tensor as contiguous uint32.
    int32/uint32 contiguous tensors are passed in place; int64 ones are converted after
    checking every value is in [0, 2^32). ``limit``: the values' upper bound, used only
    to decide whether negative int32 values could alias valid indices."""
    t = _tensor(t, op, name)
    if t.dtype not in _INDEX_DTYPES:
        raise _err(_INVALID, op, f"{name} must be an int32, int64 or uint32 tensor, got {t.dtype}")
    t = t.reshape(-1)
    n = t.numel()
    if n == 0:
        return t, None, 0
    if t.dtype == torch.int64:
        a = t.numpy()
        if (a >> 32).any():
            raise _err(_OUT_OF_RANGE, op, f"{name} holds a value outside [0, 2^32)")
        u = a.astype(np.uint32)
        return u, u.ctypes.data, n
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype == torch.int32 and (limit is None or limit > 0x7FFFFFFF) and int(t.min()) < 0:
        raise _err(_OUT_OF_RANGE, op, f"{name} holds a negative value")
    return t, t.data_ptr(), n


def _sizes(t, op: str, name: str, count: int) -> Tuple[object, Optional[int]]:
    """A tensor of ``count`` non-negative integers as contiguous size_t."""
    t = _tensor(t, op, name)
    if t.dtype not in _INDEX_DTYPES or t.numel() != count:
        raise _err(_INVALID, op, f"{name} must be {count} integers (int32/int64), got {t.dtype} {tuple(t.shape)}")
    if count == 0:
        return t, None
    a = t.reshape(-1).numpy().astype(np.int64, copy=False)
    if (a < 0).any():
        raise _err(_INVALID, op, f"{name} holds a negative value")
    a = np.ascontiguousarray(a)
    return a, a.ctypes.data


def _mask(t, op: str, shape: Tuple[int, ...]) -> Tuple[object, Optional[int], int]:
    """A keep mask (bool/uint8) of ``shape`` as contiguous bytes: (keep alive, ptr, row stride)."""
    t = _tensor(t, op, "keep_mask")
    if t.dtype not in (torch.bool, torch.uint8):
        raise _err(_INVALID, op, f"keep_mask must be a bool or uint8 tensor, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise _err(_INVALID, op, f"keep_mask must have shape {shape}, got {tuple(t.shape)}")
    if t.numel() and not _rows_ok(t.reshape(-1, shape[-1])):
        t = t.contiguous()
    t2 = t.reshape(-1, shape[-1])
    return t, _ptr(t), _row_stride(t2) if t2.shape[0] > 1 else shape[-1]


def _scores(scores, op: str, copy: bool) -> Tuple[Tensor, int, int, int]:
    """(f32 tensor, batch, n, row stride) of f32/f16/bf16 scores ``[n]`` or ``[batch, n]``
    (f16/bf16 widened exactly to f32); rows may be strided, elements must be adjacent."""
    if not isinstance(scores, Tensor) or not scores.is_cpu:
        _tensor(scores, op, "scores")
    if scores.dtype != torch.float32:
        _float(scores, op, "scores")
        _inference(op, scores)
        scores = scores.float()
    elif scores.requires_grad:
        _inference(op, scores)
    shape, strides = scores.shape, scores.stride()
    if len(shape) == 1:
        batch, n = 1, shape[0]
        if n > 1 and strides[0] != 1:
            if copy:
                return scores.contiguous(), batch, n, n
            raise _err(_BAD_STRIDE, op, f"scores (shape {tuple(shape)}, strides {strides}) cannot be passed "
                       "without a copy: a row's elements must be adjacent (stride 1); pass copy=True "
                       "to copy it")
        return scores, batch, n, n
    if len(shape) != 2:
        raise _err(_INVALID, op, f"scores must be 1-D or 2-D, got shape {tuple(shape)}")
    batch, n = shape
    if n > 1 and strides[1] != 1 or batch > 1 and strides[0] < n:
        if copy:
            return scores.contiguous(), batch, n, n
        raise _err(_BAD_STRIDE, op, f"scores (shape {tuple(shape)}, strides {strides}) cannot be passed "
                   "without a copy: a row's elements must be adjacent (stride 1) and rows must not "
                   "overlap (stride(0) >= n, no zero strides); pass copy=True to copy it")
    return scores, batch, n, strides[0] if batch > 1 else n


def _inference(op: str, *tensors) -> None:
    """Raises at the call when autograd would have to differentiate through ``op``."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        raise RuntimeError(
            f"tokenroute.{op} is inference-only (no backward) and an input requires grad: call it "
            "under torch.no_grad() / torch.inference_mode(), or detach the inputs"
        )


#: The ``tokenroute`` operator library (torch.library): each operator's schema is
#: inferred from its Python signature (``torch.library.infer_schema``, as
#: ``torch.library.custom_op`` does), mutated arguments declared; its implementation
#: is registered for every dispatch key (CompositeExplicitAutograd) and refuses
#: non-CPU tensors itself with a clear error; ``register_fake`` gives the shapes for
#: tracing. (``torch.library.custom_op`` wraps the same registrations in a Python
#: autograd layer and an aliasing check on every call, which costs more than the
#: library's kernels take on small inputs: measured in python/bench_torch.py.)
_LIB = torch.library.Library("tokenroute", "DEF")


def _op(name: str, mutates: Tuple[str, ...] = ()):
    def deco(fn):
        _LIB.define(name + torch.library.infer_schema(fn, mutates_args=mutates))
        _LIB.impl(name, fn, "CompositeExplicitAutograd")
        fn.register_fake = lambda fake: torch.library.register_fake(f"tokenroute::{name}", fake, lib=_LIB)
        return fn

    return deco


# --- selection -----------------------------------------------------------------------


@_op("topk")
def _topk_op(
    scores: Tensor,
    k: int,
    sorted: bool = True,
    keep_first: int = 0,
    keep_last: int = 0,
    keep_mask: Optional[Tensor] = None,
    valid_lens: Optional[Tensor] = None,
    copy: bool = False,
) -> Tuple[Tensor, Tensor]:
    op = "topk"
    s2, batch, n, ss = _scores(scores, op, copy)
    if k < 0 or keep_first < 0 or keep_last < 0:
        raise _err(_INVALID, op, "k, keep_first and keep_last must be >= 0")
    o = TopkOptions()
    o.struct_size = _TOPK_SIZE
    if sorted:
        o.flags = _ORDER_SCORE
    o.keep_first, o.keep_last = keep_first, keep_last
    alive = []
    if keep_mask is not None:
        m, o.keep_mask, o.keep_mask_row_stride = _mask(keep_mask, op, tuple(scores.shape))
        alive.append(m)
    if valid_lens is not None:
        lens, o.valid_lens = _sizes(valid_lens, op, "valid_lens", batch)
        alive.append(lens)
    shape = (batch, k) if scores.dim() == 2 else (k,)
    values = torch.empty(shape, dtype=torch.float32)
    idx, ip = _scratch_u32(batch * k)
    o.out_scores = values.data_ptr() if batch * k else None
    o.out_scores_row_stride = k
    st = _topk(_ptr(s2), batch, n, ss, k, ctypes.byref(o), ip, k, None, None, 0)
    _check(st, op, "tkr_topk_f32")
    if scores.dtype != torch.float32:
        values = values.to(scores.dtype)
    return values, torch.from_numpy(idx[: batch * k].astype(np.int64).reshape(shape))


@_topk_op.register_fake
def _(scores, k, sorted=True, keep_first=0, keep_last=0, keep_mask=None, valid_lens=None, copy=False):
    shape = (k,) if scores.dim() == 1 else (scores.shape[0], k)
    return scores.new_empty(shape), scores.new_empty(shape, dtype=torch.int64)


@_op("threshold")
def _threshold_op(
    scores: Tensor,
    tau: float,
    keep_first: int = 0,
    keep_last: int = 0,
    keep_mask: Optional[Tensor] = None,
    valid_lens: Optional[Tensor] = None,
    copy: bool = False,
) -> Tuple[Tensor, Tensor]:
    op = "threshold"
    s2, batch, n, ss = _scores(scores, op, copy)
    if keep_first < 0 or keep_last < 0:
        raise _err(_INVALID, op, "keep_first and keep_last must be >= 0")
    o = ThresholdOptions()
    o.struct_size = ctypes.sizeof(ThresholdOptions)
    o.keep_first, o.keep_last = keep_first, keep_last
    alive = []
    if keep_mask is not None:
        m, o.keep_mask, o.keep_mask_row_stride = _mask(keep_mask, op, tuple(scores.shape))
        alive.append(m)
    if valid_lens is not None:
        lens, o.valid_lens = _sizes(valid_lens, op, "valid_lens", batch)
        alive.append(lens)
    idx = np.empty((batch, n), dtype=np.uint32)
    counts = np.empty(batch, dtype=np.uint64)
    st = _threshold(_ptr(s2), batch, n, ss, float(tau), ctypes.byref(o), idx.ctypes.data if idx.size else None,
                    n, counts.ctypes.data if batch else None)
    _check(st, op, "tkr_threshold_f32")
    counts = counts.astype(np.int64)
    if scores.dim() == 1:
        return torch.from_numpy(idx[0, : counts[0]].astype(np.int64)), torch.from_numpy(counts.reshape(()))
    out = idx.astype(np.int64)
    # Entries past a row's count are unspecified in C: make them -1.
    out[np.arange(n)[None, :] >= counts[:, None]] = -1
    return torch.from_numpy(out), torch.from_numpy(counts)


@_threshold_op.register_fake
def _(scores, tau, keep_first=0, keep_last=0, keep_mask=None, valid_lens=None, copy=False):
    if scores.dim() == 1:
        count = torch.library.get_ctx().new_dynamic_size(max=scores.shape[0])
        return scores.new_empty((count,), dtype=torch.int64), scores.new_empty((), dtype=torch.int64)
    return (scores.new_empty(scores.shape, dtype=torch.int64),
            scores.new_empty((scores.shape[0],), dtype=torch.int64))


# --- compaction ----------------------------------------------------------------------


def _gather_into(op: str, src: Tensor, idx: Tensor, out: Tensor, copy: bool) -> None:
    _tensor(src, op, "src")
    _tensor(out, op, "out")
    _inference(op, src, out)
    if out.dtype != src.dtype:
        raise _err(_INVALID, op, f"out is {out.dtype} but src is {src.dtype}")
    src, n, row, ss = _rows(src, op, "src", copy)
    keep, ip, m = _u32(idx, op, "idx", n)
    if tuple(out.shape) != (m,) + tuple(src.shape[1:]):
        raise _err(_INVALID, op, f"out must have shape {(m,) + tuple(src.shape[1:])}, got {tuple(out.shape)}")
    out, _, _, os_ = _rows(out, op, "out", False, out=True)
    st = _gather(src.element_size(), row, _ptr(src), n, ss, ip, m, _ptr(out), os_)
    _check(st, op, "tkr_gather_rows")


@_op("gather_rows")
def _gather_op(src: Tensor, idx: Tensor, copy: bool = False) -> Tensor:
    _tensor(src, "gather_rows", "src")
    _tensor(idx, "gather_rows", "idx")
    if src.dim() == 0:
        raise _err(_INVALID, "gather_rows", "src must have at least one dimension")
    out = torch.empty((idx.numel(),) + tuple(src.shape[1:]), dtype=src.dtype)
    _gather_into("gather_rows", src, idx, out, copy)
    return out


@_gather_op.register_fake
def _(src, idx, copy=False):
    return src.new_empty((idx.numel(),) + tuple(src.shape[1:]))


def _gather_setup(ctx, inputs, output):
    src, idx, _ = inputs
    ctx.n = src.shape[0]
    ctx.save_for_backward(idx)


def _gather_backward(ctx, grad):
    (idx,) = ctx.saved_tensors
    g = grad.new_zeros((ctx.n,) + tuple(grad.shape[1:]))
    g.index_add_(0, idx.reshape(-1).to(torch.int64), grad)
    return g, None, None


torch.library.register_autograd("tokenroute::gather_rows", _gather_backward, setup_context=_gather_setup, lib=_LIB)


@_op("gather_rows_out", ("out",))
def _gather_out_op(src: Tensor, idx: Tensor, out: Tensor, copy: bool = False) -> None:
    _gather_into("gather_rows_out", src, idx, out, copy)


@_gather_out_op.register_fake
def _(src, idx, out, copy=False):
    return None


@_op("scatter_rows", ("dst",))
def _scatter_op(dst: Tensor, idx: Tensor, src: Tensor, copy: bool = False) -> None:
    op = "scatter_rows"
    _tensor(dst, op, "dst")
    _tensor(src, op, "src")
    _inference(op, dst, src)
    if src.dtype != dst.dtype:
        raise _err(_INVALID, op, f"src is {src.dtype} but dst is {dst.dtype}")
    dst, n, row, ds = _rows(dst, op, "dst", False, out=True)
    keep, ip, m = _u32(idx, op, "idx", n)
    if tuple(src.shape) != (m,) + tuple(dst.shape[1:]):
        raise _err(_INVALID, op, f"src must have shape {(m,) + tuple(dst.shape[1:])}, got {tuple(src.shape)}")
    src, _, _, ss = _rows(src, op, "src", copy)
    st = _scatter(dst.element_size(), row, _ptr(src), ss, ip, m, _ptr(dst), n, ds)
    _check(st, op, "tkr_scatter_rows")


@_scatter_op.register_fake
def _(dst, idx, src, copy=False):
    return None


@_op("scatter_add_rows", ("h",))
def _scatter_add_op(h: Tensor, idx: Tensor, y: Tensor, gate: Optional[Tensor] = None, copy: bool = False) -> None:
    op = "scatter_add_rows"
    code = _float(h, op, "h")
    _float(y, op, "y")
    _inference(op, h, y, gate)
    if y.dtype != h.dtype:
        raise _err(_INVALID, op, f"y is {y.dtype} but h is {h.dtype}")
    if h.dim() != 2:
        raise _err(_INVALID, op, f"h must be 2-D [n, d], got shape {tuple(h.shape)}")
    h, n, d, hs = _rows(h, op, "h", False, out=True)
    keep, ip, m = _u32(idx, op, "idx", n)
    if tuple(y.shape) != (m, d):
        raise _err(_INVALID, op, f"y must have shape {(m, d)}, got {tuple(y.shape)}")
    y, _, _, ys = _rows(y, op, "y", copy)
    gp = None
    if gate is not None:
        _tensor(gate, op, "gate")
        if gate.dtype != torch.float32 or gate.numel() != m or gate.dim() != 1:
            raise _err(_INVALID, op, f"gate must be a 1-D float32 tensor of {m} values, got {gate.dtype} {tuple(gate.shape)}")
        if gate.numel() > 1 and gate.stride(0) != 1:
            if not copy:
                raise _err(_BAD_STRIDE, op, f"gate (stride {gate.stride(0)}) must be contiguous; pass copy=True to copy it")
            gate = gate.contiguous()
        gp = _ptr(gate)
    st = _scatter_add(code, d, _ptr(h), n, hs, ip, m, _ptr(y), ys, gp)
    _check(st, op, "tkr_scatter_add_rows")


@_scatter_add_op.register_fake
def _(h, idx, y, gate=None, copy=False):
    return None


# --- route ---------------------------------------------------------------------------


@_op("route")
def _route_op(
    h: Tensor,
    w: Tensor,
    bias: Optional[float] = None,
    k: int = -1,
    tau: Optional[float] = None,
    sigmoid: bool = True,
    by_score: bool = False,
    keep_first: int = 0,
    keep_last: int = 0,
    keep_mask: Optional[Tensor] = None,
    copy: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    op = "route"
    code = _float(h, op, "h")
    _float(w, op, "w")
    _inference(op, h, w)
    if w.dtype != h.dtype:
        raise _err(_INVALID, op, f"w is {w.dtype} but h is {h.dtype}")
    if h.dim() != 2:
        raise _err(_INVALID, op, f"h must be 2-D [n, d], got shape {tuple(h.shape)}")
    if (k >= 0) == (tau is not None):
        raise _err(_INVALID, op, "give exactly one of k (top-k, k >= 0) or tau (threshold)")
    if tau is not None and by_score:
        raise _err(_INVALID, op, "by_score applies to top-k only")
    if keep_first < 0 or keep_last < 0:
        raise _err(_INVALID, op, "keep_first and keep_last must be >= 0")
    h, n, d, hs = _rows(h, op, "h", copy)
    if w.dim() != 1 or w.shape[0] != d:
        raise _err(_INVALID, op, f"w must have shape ({d},), got {tuple(w.shape)}")
    if d > 1 and w.stride(0) != 1:
        if not copy:
            raise _err(_BAD_STRIDE, op, f"w (stride {w.stride(0)}) must be contiguous; pass copy=True to copy it")
        w = w.contiguous()
    o = RouteOptions()
    o.struct_size = ctypes.sizeof(RouteOptions)
    o.keep_first, o.keep_last = keep_first, keep_last
    if by_score:
        o.flags = _C["TKR_TOPK_ORDER_SCORE"]
    alive = []
    if keep_mask is not None:
        m, o.keep_mask, _ = _mask(keep_mask, op, (n,))
        alive.append(m)
    bias_t = None if bias is None else (ctypes.c_float * 1)(bias)
    cap = k if tau is None else n
    idx32 = torch.empty(cap, dtype=torch.int32)
    sc = torch.empty(cap, dtype=torch.float32)
    rows = torch.empty((cap, d), dtype=h.dtype)
    count = ctypes.c_size_t()
    select = _C["TKR_ROUTE_TOPK"] if tau is None else _C["TKR_ROUTE_THRESHOLD"]
    st = _route(
        code, _ptr(h), n, d, hs, _ptr(w), bias_t, _C["TKR_ACT_SIGMOID"] if sigmoid else _C["TKR_ACT_NONE"],
        select, max(k, 0), 0.0 if tau is None else float(tau), ctypes.byref(o), _ptr(idx32), _ptr(sc),
        _ptr(rows), d, cap, ctypes.byref(count), None, 0,
    )
    _check(st, op, "tkr_route")
    c = count.value
    if tau is None:
        return idx32.to(torch.int64), sc, rows
    return idx32[:c].to(torch.int64), sc[:c].clone(), rows[:c].clone()


@_route_op.register_fake
def _(h, w, bias=None, k=-1, tau=None, sigmoid=True, by_score=False, keep_first=0, keep_last=0,
      keep_mask=None, copy=False):
    if tau is None:
        c = k
    else:
        c = torch.library.get_ctx().new_dynamic_size(max=h.shape[0])
    return (h.new_empty((c,), dtype=torch.int64), h.new_empty((c,), dtype=torch.float32),
            h.new_empty((c, h.shape[1])))


# --- attention -----------------------------------------------------------------------

def _batch_call(lay_q, lay_k, lay_v, lay_o, lse, mass, esz, osz):
    """(AttentionBatch, first pointers of q, k, v, out, lse, mass) describing a batch as
    one dense batch, or None when its per-element views are not evenly spaced with equal
    strides (an input may be shared: stride 0)."""
    strides, firsts = [], []
    per = [(lay_q, esz), (lay_k, esz), (lay_v, esz), (lay_o, osz)]
    for lay, size in per:
        if any(lay[b][1:] != lay[0][1:] for b in range(len(lay))):
            return None
        ptrs = [_ptr(t) for t, _, _ in lay]
        firsts.append(ptrs[0])
        strides.append(_even(ptrs, size))
    for t in (lse, mass):
        ptrs = None if t is None else [_ptr(x) for x in t]
        firsts.append(None if t is None else ptrs[0])
        strides.append(0 if t is None else _even(ptrs, 4))
    if None in strides or strides[3] == 0 or None in firsts[:4]:
        return None
    ab = AttentionBatch()
    ab.struct_size = ctypes.sizeof(AttentionBatch)
    ab.n_seqs = len(lay_q)
    (ab.q_batch_stride, ab.k_batch_stride, ab.v_batch_stride, ab.out_batch_stride,
     ab.lse_batch_stride, ab.mass_batch_stride) = strides
    return ab, firsts


def _even(ptrs, size):
    """The spacing of ``ptrs`` in elements of ``size`` bytes when they are evenly spaced
    upwards (0: all equal), else None."""
    if None in ptrs:
        return None
    step = ptrs[1] - ptrs[0]
    if step < 0 or step % size or any(p - ptrs[0] != i * step for i, p in enumerate(ptrs)):
        return None
    return step // size


def _span(t: Tensor) -> Tuple[int, int]:
    """[first byte, last byte + 1) of a tensor's elements."""
    lo = t.data_ptr()
    return lo, lo + (sum((n - 1) * s for n, s in zip(t.shape, t.stride())) + 1) * t.element_size()


def _qkv(q, k, v, op):
    code = _float(q, op, "q")
    _float(k, op, "k")
    _float(v, op, "v")
    if not (q.dtype == k.dtype == v.dtype):
        raise _err(_INVALID, op, f"q, k and v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dim() not in (3, 4) or k.dim() != q.dim() or v.dim() != q.dim():
        raise _err(_INVALID, op, "q, k and v must all be 3-D [tokens, heads, head_dim] or all 4-D "
                   f"[batch, tokens, heads, head_dim], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if tuple(k.shape) != tuple(v.shape):
        raise _err(_INVALID, op, f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same shape")
    if q.shape[-1] != k.shape[-1]:
        raise _err(_INVALID, op, f"q has head_dim {q.shape[-1]} but k has {k.shape[-1]}")
    if q.dim() == 4 and q.shape[0] != k.shape[0]:
        raise _err(_INVALID, op, f"q has batch {q.shape[0]} but k has {k.shape[0]}")
    hq, hkv = q.shape[-2], k.shape[-2]
    if hkv == 0 or hq % hkv:
        raise _err(_INVALID, op, f"q's {hq} heads must be a multiple of k's {hkv} heads (GQA)")
    return code


#: Marks lse / mass outputs the operator allocates.
_NEW = object()


def _attention_impl(op, q, k, v, indices, block_offsets, block_ids, block_size, query_block_size,
                    block_lists, causal, window, q_positions, k_positions, scale, out_dtype, bf16_dot,
                    copy, out, lse, mass, mass_per_head, threads):
    """Validates everything, allocates the outputs not given (``out`` None, ``lse`` /
    ``mass`` _NEW), then runs tkr_attention (one batched call, or one per element). Returns
    (out, lse, mass)."""
    code = _qkv(q, k, v, op)
    batched = q.dim() == 4
    _inference(op, q, k, v, out, None if lse is _NEW else lse, None if mass is _NEW else mass)
    B = q.shape[0] if batched else 1
    n_q, hq, d = q.shape[-3:]
    n_k, hkv = k.shape[-3], k.shape[-2]
    qs = [q[b] for b in range(B)] if batched else [q]
    ks = [k[b] for b in range(B)] if batched else [k]
    vs = [v[b] for b in range(B)] if batched else [v]
    lay_q = [_heads(t, op, "q", copy) for t in qs]
    lay_k = [_heads(t, op, "k", copy) for t in ks]
    lay_v = [_heads(t, op, "v", copy) for t in vs]
    alive = []
    keys = AttentionKeys()
    keys.struct_size = ctypes.sizeof(AttentionKeys)
    blocky = block_offsets is not None or block_ids is not None or block_size or query_block_size
    if indices is not None and blocky:
        raise _err(_INVALID, op, "give either indices or the block form (block_size, query_block_size, "
                   "block_offsets, block_ids), not both")
    if indices is not None:
        keep, keys.indices, keys.n_indices = _u32(indices, op, "indices", n_k)
        alive.append(keep)
        keys.kind = _C["TKR_KEYS_INDICES"]
    elif blocky:
        if block_offsets is None or block_ids is None or block_size <= 0 or query_block_size <= 0:
            raise _err(_INVALID, op, "the block form needs block_size > 0, query_block_size > 0, "
                       "block_offsets and block_ids")
        if block_lists not in _BLOCK_LISTS:
            raise _err(_INVALID, op, f"block_lists must be one of {sorted(_BLOCK_LISTS)}, not {block_lists!r}")
        nqb = -(-n_q // query_block_size)
        n_lists = nqb * {"shared": 1, "per_kv_head": hkv, "per_q_head": hq}[block_lists]
        ids, keys.block_ids, keys.n_block_ids = _u32(block_ids, op, "block_ids")
        offs, keys.block_offsets = _sizes(block_offsets, op, "block_offsets", n_lists + 1)
        alive += [ids, offs]
        keys.kind = _C["TKR_KEYS_BLOCKS"]
        keys.block_lists = _BLOCK_LISTS[block_lists]
        keys.block_size = block_size
        keys.query_block_size = query_block_size
    o = AttentionOptions()
    o.struct_size = ctypes.sizeof(AttentionOptions)
    o.scale = scale
    o.flags = (_C["TKR_ATTENTION_CAUSAL"] if causal else 0) | (_C["TKR_ATTENTION_BF16_DOT"] if bf16_dot else 0)
    if window < 0 or window > 0xFFFFFFFF:
        raise _err(_INVALID, op, f"window must be in [0, 2^32), got {window}")
    o.window = window
    qpos_base = None
    if causal or window or q_positions is not None or k_positions is not None:
        if q_positions is not None:
            a, qpos_base, c = _u32(q_positions, op, "q_positions")
        else:
            a = _arange(n_k + n_q)
            c, qpos_base = n_q, a.ctypes.data + 4 * max(n_k - n_q, 0)
        alive.append(a)
        if c != n_q:
            raise _err(_INVALID, op, f"q_positions must have {n_q} entries, got {c}")
        if k_positions is not None:
            a, o.k_positions, c = _u32(k_positions, op, "k_positions")
        else:
            a = _arange(n_k)
            o.k_positions, c = a.ctypes.data, n_k
        alive.append(a)
        if c != n_k:
            raise _err(_INVALID, op, f"k_positions must have {n_k} entries, got {c}")
    ocode = code if out_dtype is None else _CODES.get(out_dtype)
    if ocode is None:
        raise _err(_INVALID, op, f"out_dtype must be torch.float32, float16 or bfloat16, got {out_dtype}")
    o.out_dtype = ocode
    odt = q.dtype if out_dtype is None else out_dtype
    lead = (B,) if batched else ()
    given = []
    if out is None:
        out = torch.empty(lead + (n_q, hq, d), dtype=odt)
    else:
        _tensor(out, op, "out")
        if out.dtype != odt or tuple(out.shape) != lead + (n_q, hq, d):
            raise _err(_INVALID, op, f"out must be {odt} of shape {lead + (n_q, hq, d)}, got {out.dtype} {tuple(out.shape)}")
        given.append(out)
    outs = [out[b] for b in range(B)] if batched else [out]
    lay_o = [_heads(t, op, "out", False, out=True) for t in outs]
    lshape = lead + (n_q, hq)
    if lse is _NEW:
        lse = torch.empty(lshape, dtype=torch.float32)
    elif lse is not None:
        _tensor(lse, op, "lse")
        if lse.dtype != torch.float32 or tuple(lse.shape) != lshape or (lse.numel() and not lse.is_contiguous()):
            raise _err(_INVALID, op, f"lse must be a contiguous float32 tensor of shape {lshape}")
        given.append(lse)
    if lse is not None:
        o.lse_token_stride = hq
    mshape = lead + ((hkv, n_k) if mass_per_head else (n_k,))
    if mass is _NEW:
        mass = torch.zeros(mshape, dtype=torch.float32)
    elif mass is not None:
        _tensor(mass, op, "mass")
        if mass.dtype != torch.float32 or tuple(mass.shape) != mshape or (mass.numel() and not mass.is_contiguous()):
            raise _err(_INVALID, op, f"mass must be a contiguous float32 tensor of shape {mshape}")
        given.append(mass)
    if mass is not None:
        o.mass_head_stride = n_k if mass_per_head else 0
    # On the library's pool: every call's units are fixed by its shape, so the outputs
    # never depend on the thread count. Every element sees the same keys, lists and
    # positions, so the library's checks fail in all of them or in none (and then before
    # writing); the one check that depends on the element (an output overlapping another
    # element's inputs) is made here.
    if B > 1 and given:
        spans = [_span(x) for x in (q, k, v) if x.numel()]
        for g in given:
            if g.numel():
                lo, hi = _span(g)
                if any(lo < b and a < hi for a, b in spans):
                    raise _err(_ffi.TKR_STATUS_OVERLAP, op, "an output overlaps q, k or v")
    o.q_positions = qpos_base
    structs = []
    calls = []
    # A batch whose elements are evenly spaced views (no copies) with the key set shared
    # by every element is one C call (tkr_attention_batch strides): the library then
    # runs small elements in parallel with one another. Otherwise one call per element.
    one = None
    if batched and B > 1 and not blocky:
        one = _batch_call(lay_q, lay_k, lay_v, lay_o, lse, mass, q.element_size(), out.element_size())
    if one is not None:
        ab, (pq, pk, pv, po, pl, pm) = one
        o.batch = ctypes.addressof(ab)
        o.lse, o.mass = pl, pm
        structs += [ab, o]
        (_, qts, qhs), (_, kts, khs), (_, vts, vhs), (_, ots, ohs) = lay_q[0], lay_k[0], lay_v[0], lay_o[0]
        calls.append((code, pq, n_q, hq, d, qts, qhs, pk, pv, n_k, hkv, kts, khs, vts, vhs,
                      ctypes.byref(keys), ctypes.byref(o), po, ots, ohs))
    for b in range(B if one is None else 0):
        qt, qts, qhs = lay_q[b]
        kt, kts, khs = lay_k[b]
        vt, vts, vhs = lay_v[b]
        ot, ots, ohs = lay_o[b]
        ob = AttentionOptions.from_buffer_copy(o)
        structs.append(ob)
        ob.lse = None if lse is None else _ptr(lse[b] if batched else lse)
        ob.mass = None if mass is None else _ptr(mass[b] if batched else mass)
        calls.append((code, _ptr(qt), n_q, hq, d, qts, qhs, _ptr(kt), _ptr(vt), n_k, hkv, kts, khs, vts, vhs,
                      ctypes.byref(keys), ctypes.byref(ob), _ptr(ot), ots, ohs))
    st = 0
    with thread_cap(threads if threads > 0 else torch.get_num_threads()):
        for c in calls:
            st = _attention(*c)
            if st != _OK:
                break
    _check(st, op, "tkr_attention")
    del alive, structs
    return out, lse, mass


@_op("attention")
def _attention_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    indices: Optional[Tensor] = None,
    block_offsets: Optional[Tensor] = None,
    block_ids: Optional[Tensor] = None,
    block_size: int = 0,
    query_block_size: int = 0,
    block_lists: str = "shared",
    causal: bool = False,
    window: int = 0,
    q_positions: Optional[Tensor] = None,
    k_positions: Optional[Tensor] = None,
    scale: float = 0.0,
    out_dtype: Optional[torch.dtype] = None,
    bf16_dot: bool = False,
    return_lse: bool = False,
    return_mass: bool = False,
    mass_per_head: bool = False,
    copy: bool = False,
    threads: int = 0,
) -> Tuple[Tensor, Tensor, Tensor]:
    out, lse, mass = _attention_impl(
        "attention", q, k, v, indices, block_offsets, block_ids, block_size, query_block_size, block_lists,
        causal, window, q_positions, k_positions, scale, out_dtype, bf16_dot, copy, None,
        _NEW if return_lse else None, _NEW if return_mass else None, mass_per_head, threads)
    if lse is None:
        lse = torch.empty((0,), dtype=torch.float32)
    if mass is None:
        mass = torch.empty((0,), dtype=torch.float32)
    return out, lse, mass


@_attention_op.register_fake
def _(q, k, v, indices=None, block_offsets=None, block_ids=None, block_size=0, query_block_size=0,
      block_lists="shared", causal=False, window=0, q_positions=None, k_positions=None, scale=0.0,
      out_dtype=None, bf16_dot=False, return_lse=False, return_mass=False, mass_per_head=False,
      copy=False, threads=0):
    lead = tuple(q.shape[:-3])
    n_q, hq = q.shape[-3], q.shape[-2]
    n_k, hkv = k.shape[-3], k.shape[-2]
    out = q.new_empty(tuple(q.shape), dtype=q.dtype if out_dtype is None else out_dtype)
    lse = q.new_empty(lead + (n_q, hq) if return_lse else (0,), dtype=torch.float32)
    mass = q.new_empty(lead + ((hkv, n_k) if mass_per_head else (n_k,)) if return_mass else (0,),
                       dtype=torch.float32)
    return out, lse, mass


@_op("attention_out", ("out", "lse", "mass"))
def _attention_out_op(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Optional[Tensor] = None,
    mass: Optional[Tensor] = None,
    indices: Optional[Tensor] = None,
    block_offsets: Optional[Tensor] = None,
    block_ids: Optional[Tensor] = None,
    block_size: int = 0,
    query_block_size: int = 0,
    block_lists: str = "shared",
    causal: bool = False,
    window: int = 0,
    q_positions: Optional[Tensor] = None,
    k_positions: Optional[Tensor] = None,
    scale: float = 0.0,
    bf16_dot: bool = False,
    mass_per_head: bool = False,
    copy: bool = False,
    threads: int = 0,
) -> None:
    _attention_impl("attention_out", q, k, v, indices, block_offsets, block_ids, block_size,
                    query_block_size, block_lists, causal, window, q_positions, k_positions, scale,
                    out.dtype if isinstance(out, Tensor) else None, bf16_dot, copy, out, lse, mass,
                    mass_per_head, threads)


@_attention_out_op.register_fake
def _(q, k, v, out, lse=None, mass=None, indices=None, block_offsets=None, block_ids=None, block_size=0,
      query_block_size=0, block_lists="shared", causal=False, window=0, q_positions=None,
      k_positions=None, scale=0.0, bf16_dot=False, mass_per_head=False, copy=False, threads=0):
    return None


@_op("attention_merge")
def _merge_op(part_out: Tensor, part_lse: Tensor, out_dtype: Optional[torch.dtype] = None,
              copy: bool = False) -> Tuple[Tensor, Tensor]:
    op = "attention_merge"
    _tensor(part_out, op, "part_out")
    _tensor(part_lse, op, "part_lse")
    _inference(op, part_out, part_lse)
    if part_out.dtype != torch.float32 or part_lse.dtype != torch.float32:
        raise _err(_INVALID, op, f"part_out and part_lse must be float32, got {part_out.dtype}, {part_lse.dtype}")
    if part_out.dim() < 3:
        raise _err(_INVALID, op, f"part_out must be [n_parts, ..., head_dim], got shape {tuple(part_out.shape)}")
    p, d = part_out.shape[0], part_out.shape[-1]
    rows_shape = tuple(part_out.shape[1:-1])
    if tuple(part_lse.shape) != (p,) + rows_shape:
        raise _err(_INVALID, op, f"part_lse must have shape {(p,) + rows_shape}, got {tuple(part_lse.shape)}")
    r = math.prod(rows_shape)
    po = _flat3(part_out, op, "part_out", p, r, d, copy)
    pl = _flat2(part_lse, op, "part_lse", p, r, copy)
    odt = torch.float32 if out_dtype is None else out_dtype
    ocode = _CODES.get(odt)
    if ocode is None:
        raise _err(_INVALID, op, f"out_dtype must be torch.float32, float16 or bfloat16, got {out_dtype}")
    out = torch.empty(rows_shape + (d,), dtype=odt)
    olse = torch.empty(rows_shape, dtype=torch.float32)
    po_t, ps, rs = po
    pl_t, ls = pl
    st = _merge(ocode, _ptr(po_t), p, r, d, ps, rs, _ptr(pl_t), ls, _ptr(out), d, _ptr(olse))
    _check(st, op, "tkr_attention_merge")
    return out, olse


def _flat3(t: Tensor, op, name, p, r, d, copy):
    """[p, rows..., d] as (tensor, part stride, row stride) with rows equally spaced."""
    v = _view_rows(t, (p, r, d))
    if v is None or (d > 1 and v.stride(2) != 1) or (r > 1 and v.stride(1) < d):
        if not copy:
            raise _err(_BAD_STRIDE, op, f"{name} (shape {tuple(t.shape)}, strides {t.stride()}) cannot be passed "
                       "without a copy: rows of head_dim contiguous elements, equally spaced within a part, "
                       "not overlapping; pass copy=True to copy it")
        v = t.contiguous().reshape(p, r, d)
    rs = v.stride(1) if r > 1 else d
    ps = v.stride(0) if p > 1 else r * rs
    return v, ps, rs


def _flat2(t: Tensor, op, name, p, r, copy):
    v = _view_rows(t, (p, r))
    if v is None or (r > 1 and v.stride(1) != 1):
        if not copy:
            raise _err(_BAD_STRIDE, op, f"{name} (shape {tuple(t.shape)}, strides {t.stride()}) cannot be passed "
                       "without a copy: each part's values must be contiguous; pass copy=True to copy it")
        v = t.contiguous().reshape(p, r)
    return v, (v.stride(0) if p > 1 else r)


def _view_rows(t: Tensor, shape):
    try:
        return t.view(shape)
    except RuntimeError:
        return None


@_merge_op.register_fake
def _(part_out, part_lse, out_dtype=None, copy=False):
    rows_shape = tuple(part_out.shape[1:-1])
    return (part_out.new_empty(rows_shape + (part_out.shape[-1],), dtype=out_dtype or torch.float32),
            part_out.new_empty(rows_shape, dtype=torch.float32))


# --- Quest ---------------------------------------------------------------------------


def _summary_into(op, k, block_size, begin, end, kmin, kmax, copy):
    code = _float(k, op, "k")
    _inference(op, k, kmin, kmax)
    if k.dim() != 3:
        raise _err(_INVALID, op, f"k must be 3-D [n_k, heads, head_dim], got shape {tuple(k.shape)}")
    k, kts, khs = _heads(k, op, "k", copy)
    n_k, g, d = k.shape
    for name, t in (("kmin", kmin), ("kmax", kmax)):
        _tensor(t, op, name)
        if t.dtype != torch.float32 or t.dim() != 3 or tuple(t.shape[1:]) != (g, d) or t.shape[0] < end \
                or (t.numel() and not t.is_contiguous()):
            raise _err(_INVALID, op, f"{name} must be a contiguous float32 tensor [>= {end}, {g}, {d}], "
                       f"got {t.dtype} {tuple(t.shape)}")
    st = _summary(code, _ptr(k), n_k, g, d, kts, khs, block_size, begin, end, _ptr(kmin), _ptr(kmax))
    _check(st, op, "tkr_key_block_summary")


@_op("key_block_summary")
def _summary_op(k: Tensor, block_size: int, copy: bool = False) -> Tuple[Tensor, Tensor]:
    op = "key_block_summary"
    _float(k, op, "k")
    if k.dim() != 3:
        raise _err(_INVALID, op, f"k must be 3-D [n_k, heads, head_dim], got shape {tuple(k.shape)}")
    if block_size <= 0:
        raise _err(_INVALID, op, f"block_size must be > 0, got {block_size}")
    nb = -(-k.shape[0] // block_size)
    kmin = torch.empty((nb,) + tuple(k.shape[1:]), dtype=torch.float32)
    kmax = torch.empty_like(kmin)
    _summary_into(op, k, block_size, 0, nb, kmin, kmax, copy)
    return kmin, kmax


@_summary_op.register_fake
def _(k, block_size, copy=False):
    nb = -(-k.shape[0] // block_size)
    shape = (nb,) + tuple(k.shape[1:])
    return k.new_empty(shape, dtype=torch.float32), k.new_empty(shape, dtype=torch.float32)


@_op("key_block_summary_update", ("kmin", "kmax"))
def _summary_update_op(k: Tensor, block_size: int, block_begin: int, block_end: int, kmin: Tensor,
                       kmax: Tensor, copy: bool = False) -> None:
    op = "key_block_summary_update"
    if block_size <= 0 or block_begin < 0 or block_end < block_begin:
        raise _err(_INVALID, op, f"need block_size > 0 and 0 <= block_begin <= block_end, got "
                   f"{block_size}, {block_begin}, {block_end}")
    _summary_into(op, k, block_size, block_begin, block_end, kmin, kmax, copy)


@_summary_update_op.register_fake
def _(k, block_size, block_begin, block_end, kmin, kmax, copy=False):
    return None


@_op("quest_select_blocks")
def _quest_op(q: Tensor, kmin: Tensor, kmax: Tensor, k: int, keep_first: int = 0, keep_last: int = 0,
              copy: bool = False) -> Tuple[Tensor, Tensor]:
    op = "quest_select_blocks"
    code = _float(q, op, "q")
    _inference(op, q, kmin, kmax)
    if q.dim() != 3:
        raise _err(_INVALID, op, f"q must be 3-D [n_q, heads, head_dim], got shape {tuple(q.shape)}")
    q, qts, qhs = _heads(q, op, "q", copy)
    n_q, hq, d = q.shape
    for name, t in (("kmin", kmin), ("kmax", kmax)):
        _tensor(t, op, name)
        if t.dtype != torch.float32 or t.dim() != 3 or t.shape[2] != d or tuple(t.shape) != tuple(kmin.shape) \
                or (t.numel() and not t.is_contiguous()):
            raise _err(_INVALID, op, f"kmin and kmax must be contiguous float32 [n_blocks, heads_kv, {d}] "
                       f"tensors of one shape, got {tuple(kmin.shape)}, {tuple(kmax.shape)}")
    nb, g = kmin.shape[0], kmin.shape[1]
    if k < 0 or keep_first < 0 or keep_last < 0:
        raise _err(_INVALID, op, "k, keep_first and keep_last must be >= 0")
    k_eff = min(k, nb)
    ids = torch.empty(n_q * hq * k_eff, dtype=torch.int32)
    offs = torch.empty(n_q * hq + 1, dtype=torch.int64)
    st = _quest(code, _ptr(q), n_q, hq, d, qts, qhs, _ptr(kmin), _ptr(kmax), nb, g, k, keep_first, keep_last,
                _ptr(ids), _ptr(offs), None)
    _check(st, op, "tkr_quest_select_blocks")
    return ids, offs


@_quest_op.register_fake
def _(q, kmin, kmax, k, keep_first=0, keep_last=0, copy=False):
    rows = q.shape[0] * q.shape[1]
    return (q.new_empty((rows * min(k, kmin.shape[0]),), dtype=torch.int32),
            q.new_empty((rows + 1,), dtype=torch.int64))



# --- keyword-friendly wrappers (trace under torch.compile like the ops themselves) ----


def topk(scores: Tensor, k: int, *, sorted: bool = True, keep_first: int = 0, keep_last: int = 0,
         keep_mask: Optional[Tensor] = None, valid_lens: Optional[Tensor] = None,
         copy: bool = False) -> Tuple[Tensor, Tensor]:
    """Exact top-k of ``scores`` (``[n]`` or ``[batch, n]``, f32/f16/bf16, rows may be
    strided) along the last dim: ``(values, indices)`` like ``torch.topk`` (indices int64).

    Order of scores: numbers by value (-0.0 == +0.0), **every NaN below every number**
    (``torch.topk`` ranks NaN highest), ties to the lower index; the same on every ISA
    level. ``sorted=True``: by descending score (ties by ascending index);
    ``sorted=False``: by ascending position. Forced keeps (``keep_first``,
    ``keep_last``, ``keep_mask`` bool ``scores.shape``) count within k. ``valid_lens``
    (``[batch]``): tokens past a row's length are never selected (k must fit every row).
    """
    return torch.ops.tokenroute.topk(scores, k, sorted, keep_first, keep_last, keep_mask, valid_lens, copy)


def threshold(scores: Tensor, tau: float, *, keep_first: int = 0, keep_last: int = 0,
              keep_mask: Optional[Tensor] = None, valid_lens: Optional[Tensor] = None,
              copy: bool = False) -> Tuple[Tensor, Tensor]:
    """Tokens with ``score > tau`` (strict; NaN never) plus the forced keeps, ascending:
    ``(indices, count)`` for 1-D scores (``indices`` of data-dependent length), and for
    ``[batch, n]`` scores ``(indices [batch, n], counts [batch])`` with row r's first
    ``counts[r]`` entries valid and the rest -1."""
    return torch.ops.tokenroute.threshold(scores, tau, keep_first, keep_last, keep_mask, valid_lens, copy)


def gather_rows(src: Tensor, idx: Tensor, *, out: Optional[Tensor] = None, copy: bool = False) -> Tensor:
    """``src[idx]`` along dim 0 (``index_select(src, 0, idx)``), rows copied bit for bit
    (any dtype); ``src`` rows may be strided (dims 1.. contiguous). With ``out``, writes
    into it in place (any row stride, no copy) and returns it. Differentiable in ``src``
    (without ``out``)."""
    if out is None:
        return torch.ops.tokenroute.gather_rows(src, idx, copy)
    torch.ops.tokenroute.gather_rows_out(src, idx, out, copy)
    return out


def scatter_rows(dst: Tensor, idx: Tensor, src: Tensor, *, copy: bool = False) -> Tensor:
    """``dst[idx] = src`` in place (``dst.index_copy_(0, idx, src)``; distinct indices),
    rows copied bit for bit; returns ``dst``."""
    torch.ops.tokenroute.scatter_rows(dst, idx, src, copy)
    return dst


def scatter_add_rows(h: Tensor, idx: Tensor, y: Tensor, gate: Optional[Tensor] = None, *,
                     copy: bool = False) -> Tensor:
    """``h[idx] += gate[:, None] * y`` in place (distinct indices; f32 arithmetic, product
    then sum each rounded to f32: in f32 equal to ``h.index_add_(0, idx, gate[:, None] * y)``),
    rounded to ``h``'s dtype; returns ``h``."""
    torch.ops.tokenroute.scatter_add_rows(h, idx, y, gate, copy)
    return h


def route(h: Tensor, w: Tensor, bias: Optional[float] = None, *, k: Optional[int] = None,
          tau: Optional[float] = None, sigmoid: bool = True, by_score: bool = False, keep_first: int = 0,
          keep_last: int = 0, keep_mask: Optional[Tensor] = None, copy: bool = False):
    """Scores ``s_i = sigmoid(h[i] . w + bias)``, selects (top-``k`` or ``> tau``) and
    gathers the rows in one call: ``(indices int64, scores f32, rows)``."""
    return torch.ops.tokenroute.route(h, w, bias, -1 if k is None else k, tau, sigmoid, by_score,
                                      keep_first, keep_last, keep_mask, copy)


def attention(q: Tensor, k: Tensor, v: Tensor, *, indices: Optional[Tensor] = None,
              block_offsets: Optional[Tensor] = None, block_ids: Optional[Tensor] = None, block_size: int = 0,
              query_block_size: int = 0, block_lists: str = "shared", causal: bool = False, window: int = 0,
              q_positions: Optional[Tensor] = None, k_positions: Optional[Tensor] = None, scale: float = 0.0,
              out_dtype: Optional[torch.dtype] = None, bf16_dot: bool = False, out: Optional[Tensor] = None,
              lse: Optional[Tensor] = None, mass: Optional[Tensor] = None, return_lse: bool = False,
              return_mass: bool = False, mass_per_head: bool = False, copy: bool = False, threads: int = 0):
    """Attention of ``q`` over a subset of ``k``/``v`` (``tkr_attention``).

    ``q``: ``[n_q, heads_q, head_dim]``, ``k``/``v``: ``[n_k, heads_kv, head_dim]`` (or
    all with a leading batch dim), one dtype (f32/f16/bf16), heads_q a multiple of
    heads_kv (GQA); token-major or head-major views are read in place. Keys: dense, or
    ``indices`` (rows of k shared by every query), or the block form (``block_size``,
    ``query_block_size``, ``block_offsets``, ``block_ids``, ``block_lists``: e.g. the
    output of :func:`quest_select_blocks` with ``block_lists="per_q_head"``,
    ``query_block_size=1``). ``causal``/``window`` mask by positions (default: queries at
    the last n_q positions of ``range(n_k)``). ``scale`` 0 means ``1/sqrt(head_dim)``.

    Returns ``out`` (``q``'s shape, ``out_dtype`` or q's dtype), or ``(out, lse, mass)``
    with ``return_lse`` / ``return_mass`` (``lse`` ``[..., n_q, heads_q]``, ``mass``
    ``[..., n_k]`` or ``[..., heads_kv, n_k]`` with ``mass_per_head``; None when not
    asked). ``out`` (and ``lse``, ``mass``, which is ADDED into) given: written in place,
    no copy. ``threads``: 0 = ``torch.get_num_threads()``.
    """
    common = dict(indices=indices, block_offsets=block_offsets, block_ids=block_ids, block_size=block_size,
                  query_block_size=query_block_size, block_lists=block_lists, causal=causal, window=window,
                  q_positions=q_positions, k_positions=k_positions, scale=scale, bf16_dot=bf16_dot,
                  mass_per_head=mass_per_head, copy=copy, threads=threads)
    if out is not None or lse is not None or mass is not None:
        if out is None:
            raise _err(_INVALID, "attention", "lse= and mass= need out= as well")
        torch.ops.tokenroute.attention_out(q, k, v, out, lse, mass, **common)
        if lse is None and mass is None and not (return_lse or return_mass):
            return out
        return out, lse, mass
    o, l, m = torch.ops.tokenroute.attention(q, k, v, out_dtype=out_dtype, return_lse=return_lse,
                                             return_mass=return_mass, **common)
    if not (return_lse or return_mass):
        return o
    return o, (l if return_lse else None), (m if return_mass else None)


def attention_merge(part_out: Tensor, part_lse: Tensor, *, out_dtype: Optional[torch.dtype] = None,
                    copy: bool = False) -> Tuple[Tensor, Tensor]:
    """Merges partial attention results over disjoint key chunks by their log-sum-exp:
    ``part_out`` f32 ``[n_parts, rows..., head_dim]``, ``part_lse`` f32 ``[n_parts, rows...]``
    -> ``(out [rows..., head_dim], lse [rows...])``."""
    return torch.ops.tokenroute.attention_merge(part_out, part_lse, out_dtype, copy)


def key_block_summary(k: Tensor, block_size: int, *, copy: bool = False) -> Tuple[Tensor, Tensor]:
    """Quest summaries of ``k`` ``[n_k, heads_kv, head_dim]``: elementwise min and max
    over each block of ``block_size`` keys, f32 ``[n_blocks, heads_kv, head_dim]``."""
    return torch.ops.tokenroute.key_block_summary(k, block_size, copy)


def quest_select_blocks(q: Tensor, kmin: Tensor, kmax: Tensor, k: int, *, keep_first: int = 0,
                        keep_last: int = 0, copy: bool = False) -> Tuple[Tensor, Tensor]:
    """Quest: the ``k`` key blocks of highest bound for every (query, head) row, plus the
    first ``keep_first`` and last ``keep_last`` blocks, ids ascending: ``(block_ids int32,
    block_offsets int64)``, list ``h * n_q + i``; pass them to :func:`attention` with
    ``block_lists="per_q_head"``, ``query_block_size=1`` and the summaries' block size."""
    return torch.ops.tokenroute.quest_select_blocks(q, kmin, kmax, k, keep_first, keep_last, copy)
