"""A transformers attention backend: ``attn_implementation="tokenroute"``.

::

    import tokenroute.hf                      # registers the backend (needs torch, transformers)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="tokenroute")
    tokenroute.hf.configure(model, quest_budget=1024)   # optional: Quest in decode

Every attention layer of the model then runs ``torch.ops.tokenroute.attention``: prefill
causal by positions, decode over the KV cache transformers keeps (read in place: the
``[batch, heads_kv, seq, head_dim]`` cache tensors are passed as head-major views), GQA
without repeating K/V. The attention mask transformers builds (the ``"sdpa"`` one,
registered for this backend too) is honoured: no mask means causal (prefill) or every
key (decode); a boolean mask is turned into per-sequence key lists and query positions
when it is causal-with-padding (checked exactly), else evaluated row by row.

Options (:func:`configure`, stored in ``model.config.tokenroute_attention``):

- ``quest_budget`` (int, default None = dense): in decode (one query token, no padding),
  attend to at most this many keys per (query head): Quest's query-aware key-block
  selection over min/max summaries of blocks of ``quest_block_size`` keys, kept up to date
  incrementally as the cache grows (one new block summary per step), plus the first
  ``quest_keep_first`` and last ``quest_keep_last`` blocks. Contexts within the budget,
  prefill and padded batches stay dense.
- ``quest_block_size`` (default 16), ``quest_keep_first`` (1), ``quest_keep_last`` (1).
- ``threads`` (default 0 = ``torch.get_num_threads()``).

Numerics: dense outputs are within the library's attention bound of an exact evaluation
(README "Numerics": ``2^-17 (1 + A + n/64) vmax + u_out |exact|``), so the model's
logits match the ``"sdpa"`` backend's to a few units of f32 rounding per layer
(measured: python/tests/test_torch_hf.py, python/bench_torch.py).

The Quest summaries live on each attention module and assume the cache grows by one token
per decode step (greedy / sampled generation); a decode step whose cache length is not the
previous one plus one recomputes them from the whole cache. Beam search reorders the cache
without changing its length: use the dense mode there.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import torch as _ops  # noqa: F401  (registers torch.ops.tokenroute)
from ._ffi import TKR_STATUS_INVALID_ARGUMENT, TokenrouteError

try:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
except ImportError as e:  # pragma: no cover - the module needs transformers
    raise ImportError("tokenroute.hf needs transformers (pip install transformers)") from e

NAME = "tokenroute"

DEFAULTS = {
    "quest_budget": None,
    "quest_block_size": 16,
    "quest_keep_first": 1,
    "quest_keep_last": 1,
    "threads": 0,
}


def _invalid(detail: str) -> TokenrouteError:
    return TokenrouteError(TKR_STATUS_INVALID_ARGUMENT, "tokenroute.hf", detail)


def _validate(options: dict) -> dict:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise _invalid(f"unknown option(s) {unknown}; the options are {sorted(DEFAULTS)}")
    o = dict(DEFAULTS, **options)
    b = o["quest_budget"]
    if b is not None and (not isinstance(b, int) or b <= 0):
        raise _invalid(f"quest_budget must be None or an int > 0, got {b!r}")
    for name in ("quest_block_size",):
        if not isinstance(o[name], int) or o[name] <= 0:
            raise _invalid(f"{name} must be an int > 0, got {o[name]!r}")
    for name in ("quest_keep_first", "quest_keep_last", "threads"):
        if not isinstance(o[name], int) or o[name] < 0:
            raise _invalid(f"{name} must be an int >= 0, got {o[name]!r}")
    if b is not None and (o["quest_keep_first"] + o["quest_keep_last"]) * o["quest_block_size"] > b:
        raise _invalid("quest_budget must cover the forced blocks: (quest_keep_first + quest_keep_last) "
                       f"* quest_block_size = {(o['quest_keep_first'] + o['quest_keep_last']) * o['quest_block_size']}"
                       f" > {b}")
    return o


def configure(model, **options) -> dict:
    """Sets the backend's options on ``model`` (any module with a ``config``, or a
    config itself): see the module docstring. Unknown names or bad values raise
    ``ValueError``. Returns the options in force (defaults filled in)."""
    config = getattr(model, "config", model)
    o = _validate(options)
    config.tokenroute_attention = o
    return o


def _options(module) -> dict:
    config = getattr(module, "config", None)
    o = getattr(config, "tokenroute_attention", None)
    if o is None:
        return DEFAULTS
    if set(o) != set(DEFAULTS):
        o = _validate(o)
        config.tokenroute_attention = o
    return o


_MASK_CACHE: dict = {}


def _mask_plan(mask: Tensor, q_len: int, kv_len: int):
    """Per batch element, (key indices, query positions) such that causal attention over
    those keys by those positions is exactly ``mask[b, 0]``; None for an element whose
    mask has another structure (then it runs row by row)."""
    # transformers builds one mask per forward and hands it to every layer: the last
    # mask analysed is kept (a reference, so its identity cannot be reused meanwhile).
    if _MASK_CACHE.get("mask") is mask and _MASK_CACHE["shape"] == (q_len, kv_len):
        return _MASK_CACHE["plan"]
    orig = mask
    if mask.dtype != torch.bool:
        if not mask.is_floating_point():
            raise _invalid(f"attention_mask of dtype {mask.dtype} is not supported")
        allowed = mask == 0
        if not bool(((mask == 0) | (mask <= torch.finfo(mask.dtype).min / 2)).all()):
            raise _invalid("an additive attention_mask with values other than 0 and -inf (a bias) is not supported")
        mask = allowed
    m = mask.expand(mask.shape[0], 1, q_len, kv_len)[:, 0]
    ar = torch.arange(kv_len)
    plan = []
    for b in range(m.shape[0]):
        mb = m[b]
        visible = mb.any(0)
        keys = visible.nonzero().reshape(-1).to(torch.int32)
        # A query's position: its last visible key (a row that sees no key, e.g. a left
        # padding query, goes just before the first visible key).
        last = torch.where(mb, ar, -1).amax(1)
        first = int(keys[0]) if keys.numel() else kv_len
        ok = first > 0 or bool((last >= 0).all())
        if ok:
            last = torch.where(last >= 0, last, first - 1)
            recon = visible.unsqueeze(0) & (ar.unsqueeze(0) <= last.unsqueeze(1))
            ok = torch.equal(recon, mb)
        plan.append((keys, last.to(torch.int32)) if ok else None)
    _MASK_CACHE.update(mask=orig, shape=(q_len, kv_len), plan=plan)
    return plan


def _quest(module, q: Tensor, k: Tensor, v: Tensor, scale: float, o: dict) -> Optional[Tensor]:
    """Quest decode over the cache, or None when the context fits the budget."""
    B, _, hq, d = q.shape
    kv_len, hkv = k.shape[1], k.shape[2]
    bs = o["quest_block_size"]
    budget_blocks = o["quest_budget"] // bs
    nb = -(-kv_len // bs)
    if nb <= budget_blocks:
        return None
    st = module.__dict__.get("_tokenroute_quest")
    same = st is not None and st["kmin"].shape[0] == B and st["kmin"].shape[2:] == (hkv, d) and st["bs"] == bs
    # Blocks before `begin` are summarized already when the cache grew by one token.
    begin = st["n"] // bs if same and st["n"] + 1 == kv_len else 0
    kmin, kmax = (st["kmin"], st["kmax"]) if same else (None, None)
    if kmin is None or kmin.shape[1] < nb:
        cap = max(2 * nb, 64)
        grown = torch.empty((B, cap, hkv, d), dtype=torch.float32), torch.empty((B, cap, hkv, d), dtype=torch.float32)
        if begin:
            grown[0][:, :begin] = kmin[:, :begin]
            grown[1][:, :begin] = kmax[:, :begin]
        kmin, kmax = grown
    for b in range(B):
        torch.ops.tokenroute.key_block_summary_update(k[b], bs, begin, nb, kmin[b], kmax[b])
    module._tokenroute_quest = {"n": kv_len, "bs": bs, "kmin": kmin, "kmax": kmax}
    out = torch.empty(q.shape, dtype=q.dtype)
    for b in range(B):
        ids, offs = torch.ops.tokenroute.quest_select_blocks(
            q[b], kmin[b, :nb], kmax[b, :nb], budget_blocks, o["quest_keep_first"], o["quest_keep_last"])
        ob, _, _ = torch.ops.tokenroute.attention(
            q[b], k[b], v[b], block_offsets=offs, block_ids=ids, block_size=bs, query_block_size=1,
            block_lists="per_q_head", scale=scale, threads=o["threads"])
        out[b] = ob
    return out


def tokenroute_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Optional[Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs,
):
    """The backend: ``query`` ``[batch, heads_q, q_len, head_dim]``, ``key`` / ``value``
    ``[batch, heads_kv, kv_len, head_dim]`` (the cache) -> ``([batch, q_len, heads_q,
    head_dim], None)``."""
    if dropout and module.training:
        raise _invalid("attention dropout is not supported (inference backend)")
    for name in ("softcap", "sinks", "s_aux", "position_bias"):
        if kwargs.get(name) is not None:
            raise _invalid(f"{name} is not supported by the tokenroute backend")
    if kwargs.get("output_attentions"):
        raise _invalid("output_attentions is not supported by the tokenroute backend")
    if kwargs.get("sliding_window"):
        raise _invalid("sliding_window attention is not supported by the tokenroute backend yet")
    o = _options(module)
    q = query.transpose(1, 2)  # [b, q_len, hq, d]
    k = key.transpose(1, 2)    # [b, kv_len, hkv, d], head-major over the cache: no copy
    v = value.transpose(1, 2)
    B, q_len = q.shape[0], q.shape[1]
    kv_len = k.shape[1]
    scale = float(scaling) if scaling is not None else 0.0
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    threads = o["threads"]
    if not causal and attention_mask is None:
        out, _, _ = torch.ops.tokenroute.attention(q, k, v, scale=scale, threads=threads)
        return out, None
    if attention_mask is None:
        if q_len == 1:
            if o["quest_budget"] is not None:
                out = _quest(module, q, k, v, scale, o)
                if out is not None:
                    return out, None
            out, _, _ = torch.ops.tokenroute.attention(q, k, v, scale=scale, threads=threads)
            return out, None
        # q_len > 1 without a mask: transformers skips the mask when queries and keys
        # start together (prefill; an empty static cache is longer: top-left alignment).
        module.__dict__.pop("_tokenroute_quest", None)
        qpos = torch.arange(q_len, dtype=torch.int32)
        out, _, _ = torch.ops.tokenroute.attention(q, k, v, causal=True, q_positions=qpos, scale=scale,
                                                   threads=threads)
        return out, None
    if q_len > 1:
        module.__dict__.pop("_tokenroute_quest", None)
    plan = _mask_plan(attention_mask, q_len, kv_len)
    out = torch.empty(q.shape, dtype=q.dtype)
    for b in range(B):
        p = plan[b]
        if p is not None:
            keys, qpos = p
            ob, _, _ = torch.ops.tokenroute.attention(q[b], k[b], v[b], indices=keys, causal=True,
                                                      q_positions=qpos, scale=scale, threads=threads)
            out[b] = ob
            continue
        mb = attention_mask[b, 0].expand(q_len, kv_len)
        if mb.dtype != torch.bool:
            mb = mb == 0
        for i in range(q_len):
            keys = mb[i].nonzero().reshape(-1).to(torch.int32)
            ob, _, _ = torch.ops.tokenroute.attention(q[b, i:i + 1], k[b], v[b], indices=keys, scale=scale,
                                                      threads=threads)
            out[b, i] = ob[0]
    return out, None


def register() -> None:
    """Registers the backend (and the ``"sdpa"`` mask builder) under ``"tokenroute"``
    with transformers; done when this module is imported."""
    AttentionInterface.register(NAME, tokenroute_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


register()
