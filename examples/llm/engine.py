"""The decode engine: an f16 KV cache per sequence in the ``[tokens, kv_heads, head_dim]``
layout the library takes, the causal prefill and the decode step with every attention
through tokenroute, and the decode methods:

- ``dense``: every cached key (``tokenroute.attention``, dense keys);
- ``sink``: StreamingLLM's sink + window as block lists: the first key block and the
  newest ``budget / block - 1`` blocks (``block_lists="shared"``);
- ``quest``: per layer, min/max summaries of every key block kept up to date as keys are
  appended (``tokenroute.key_block_summary`` over the changed block only), a
  query-aware top-k of blocks per query head every step
  (``tokenroute.quest_select_blocks``, the first and newest blocks forced), block-sparse
  attention (``block_lists="per_q_head"``); the first ``dense_layers`` layers stay dense
  (as in the Quest paper) and are counted in every figure;
- ``h2o``: heavy hitters plus a recent window: every attention call adds its per-key
  attention mass (summed over the query heads of each KV head) to an accumulator, and
  whenever the cache holds more than ``budget`` keys, ``tokenroute.topk`` keeps per KV
  head the ``budget / 2`` newest keys and the ``budget / 2`` heaviest older ones, and
  ``tokenroute.kv_compact`` compacts K, V and the accumulator in place; at the start
  the prefill's mass picks them, and the cache is then reallocated at ``budget + 1``
  rows, so memory shrinks too.

Every library call is timed (``Timers``) apart from the numpy projections.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence as Seq

import numpy as np

import tokenroute as tr

from model import Model

METHODS = ("dense", "sink", "quest", "h2o")
BLOCK = 16  # keys per block of sink and quest, by default
DENSE_LAYERS = 2  # first layers quest keeps dense, by default
F16 = np.float16
perf = time.perf_counter


class Timers(defaultdict):
    """Seconds per category of library call: ``attn`` (the attention calls),
    ``summary`` (Quest summaries), ``select`` (block / heavy-hitter selection),
    ``compact`` (H2O's kv_compact)."""

    def __init__(self):
        super().__init__(float)

    def library(self) -> float:
        return sum(self.values())


class Sequence:
    """One sequence's KV cache: per layer ``k[l]``, ``v[l]`` ``[capacity, kv_heads,
    head_dim]`` float16, ``n`` rows filled (the same in every layer), ``pos`` tokens seen
    (the next token's position; ``n < pos`` after an eviction)."""

    def __init__(self, model: Model, capacity: int):
        c = model.cfg
        self.cfg = c
        self.capacity = int(capacity)
        shape = (self.capacity, c.n_kv_heads, c.head_dim)
        self.k = [np.zeros(shape, F16) for _ in range(c.n_layers)]
        self.v = [np.zeros(shape, F16) for _ in range(c.n_layers)]
        self.n = 0
        self.pos = 0
        self.mass: Optional[List[np.ndarray]] = None  # prefill attention mass [kv, n] per layer

    def copy(self) -> "Sequence":
        s = Sequence.__new__(Sequence)
        s.cfg, s.capacity, s.n, s.pos = self.cfg, self.capacity, self.n, self.pos
        s.k = [x.copy() for x in self.k]
        s.v = [x.copy() for x in self.v]
        s.mass = None if self.mass is None else [m.copy() for m in self.mass]
        return s

    def nbytes(self) -> int:
        """Bytes of K/V cache memory held."""
        return sum(x.nbytes for x in self.k) + sum(x.nbytes for x in self.v)

    def shrink(self, capacity: int) -> None:
        """Reallocates the cache at ``capacity`` rows (keeping the first ``n``)."""
        assert self.n <= capacity
        for a in (self.k, self.v):
            for i, x in enumerate(a):
                y = np.zeros((capacity,) + x.shape[1:], F16)
                y[: self.n] = x[: self.n]
                a[i] = y
        self.capacity = capacity


def check_budget(method: str, budget: Optional[int], context: int, block: int = BLOCK) -> None:
    """Bad method / budget: a clear error naming the limit."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "dense":
        return
    if budget is None:
        raise ValueError(f"method {method!r} needs a key budget")
    if int(budget) <= 0:
        raise ValueError(f"budget {budget} must be at least 1 key")
    if int(budget) > context:
        raise ValueError(f"budget {budget} exceeds the context of {context} tokens")
    if method in ("sink", "quest") and int(budget) < 2 * block:
        raise ValueError(f"budget {budget} holds fewer than the 2 forced blocks of {block} keys "
                         f"(first and newest): at least {2 * block}")
    if method == "h2o" and int(budget) < 2:
        raise ValueError(f"budget {budget}: h2o keeps a recent half and a heavy half, at least 2")


class Method:
    """A decode method: ``prepare`` after the prefill, ``attend`` per layer and step."""

    name = "?"
    evicts = False

    def __init__(self, model: Model, budget: Optional[int]):
        self.cfg = model.cfg
        self.budget = budget
        self.timers = Timers()
        self.rows_read = 0  # distinct K/V rows read (summed over KV heads) since reset
        self.extra_bytes = 0  # other bytes read by the selection (Quest summaries)

    def label(self) -> str:
        """``name-budget``, with ``-b<block>`` / ``-d<dense layers>`` when not the default."""
        if self.budget is None:
            return self.name
        lab = f"{self.name}-{self.budget}"
        if getattr(self, "block", BLOCK) != BLOCK:
            lab += f"-b{self.block}"
        if getattr(self, "dense_layers", DENSE_LAYERS) != DENSE_LAYERS:
            lab += f"-d{self.dense_layers}"
        return lab

    def prepare(self, s: Sequence) -> None:
        pass

    def attend(self, layer: int, q: np.ndarray, s: Sequence, n: int, out: np.ndarray) -> None:
        raise NotImplementedError

    def replay(self, layer: int, q: np.ndarray, s: Sequence, n: int, out: np.ndarray) -> None:
        """The last ``attend`` of ``layer``'s attention call again, with the same key
        selection and no change of state (for timing side by side and checks)."""
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], out_dtype="f32", out=out)

    def rows_after(self, s: Sequence, n: int) -> int:
        return n

    def last_keys(self, layer: int, s: Sequence, n: int):
        """The keys the last ``attend`` of ``layer`` read: None (all ``n``), or per query
        head the token indices (for the torch comparison)."""
        return None

    def _dense(self, q, s, layer, n, out):
        t0 = perf()
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], out_dtype="f32", out=out)
        self.timers["attn"] += perf() - t0
        self.rows_read += n * self.cfg.n_kv_heads


class Dense(Method):
    name = "dense"

    def attend(self, layer, q, s, n, out):
        self._dense(q, s, layer, n, out)


def _block_rows(ids: np.ndarray, block: int, n: int) -> np.ndarray:
    """Token indices of the blocks listed in each row of ``ids`` (every row holds the
    newest, maybe partial, block once: its missing rows are dropped)."""
    r = (ids.astype(np.int64)[..., None] * block + np.arange(block)).reshape(ids.shape[0], -1)
    return r[r < n].reshape(ids.shape[0], -1)


def _keys_in(ids: np.ndarray, block: int, n: int) -> int:
    """Keys in the distinct blocks ``ids`` (ascending) of an ``n``-key cache."""
    nb = -(-n // block)
    return ids.size * block - (nb * block - n if ids.size and ids[-1] == nb - 1 else 0)


class SinkWindow(Method):
    """The first block (the attention sink) and the newest ``budget / block - 1``."""

    name = "sink"

    def __init__(self, model, budget, block=BLOCK):
        super().__init__(model, budget)
        self.block = block
        self.k_blocks = budget // block
        self._cache = (-1, None, None)

    def _lists(self, nb):
        if self._cache[0] != nb:
            kb = min(self.k_blocks, nb)
            ids = np.concatenate([[0], np.arange(nb - kb + 1, nb)]).astype(np.uint32)
            self._cache = (nb, ids, np.array([0, ids.size], dtype=np.uintp))
        return self._cache[1], self._cache[2]

    def attend(self, layer, q, s, n, out):
        t0 = perf()
        nb = -(-n // self.block)
        ids, offs = self._lists(nb)
        t1 = perf()
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], block_size=self.block, query_block_size=1,
                     block_offsets=offs, block_ids=ids, block_lists="shared", out_dtype="f32", out=out)
        t2 = perf()
        self.timers["select"] += t1 - t0
        self.timers["attn"] += t2 - t1
        self.rows_read += _keys_in(ids, self.block, n) * self.cfg.n_kv_heads

    def replay(self, layer, q, s, n, out):
        ids, offs = self._lists(-(-n // self.block))
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], block_size=self.block, query_block_size=1,
                     block_offsets=offs, block_ids=ids, block_lists="shared", out_dtype="f32", out=out)

    def last_keys(self, layer, s, n):
        ids, _ = self._lists(-(-n // self.block))
        return _block_rows(ids[None], self.block, n)  # one list, shared by every head


class Quest(Method):
    """Query-aware block selection (Quest) with incremental summaries."""

    name = "quest"

    def __init__(self, model, budget, block=BLOCK, dense_layers=DENSE_LAYERS):
        super().__init__(model, budget)
        self.block = block
        self.k_blocks = budget // block
        self.dense_layers = dense_layers
        self.kmin: List[Optional[np.ndarray]] = []
        self.kmax: List[Optional[np.ndarray]] = []
        self.sel = [None] * model.cfg.n_layers

    def prepare(self, s):
        c, bs = self.cfg, self.block
        cap_blocks = -(-s.capacity // bs)
        self.kmin, self.kmax = [], []
        for layer in range(c.n_layers):
            if layer < self.dense_layers:
                self.kmin.append(None)
                self.kmax.append(None)
                continue
            lo = np.zeros((cap_blocks, c.n_kv_heads, c.head_dim), np.float32)
            hi = np.zeros_like(lo)
            if s.n:
                tr.key_block_summary(s.k[layer][: s.n], bs, kmin=lo, kmax=hi)
            self.kmin.append(lo)
            self.kmax.append(hi)

    def attend(self, layer, q, s, n, out):
        if layer < self.dense_layers:
            return self._dense(q, s, layer, n, out)
        bs, T = self.block, self.timers
        k, v = s.k[layer][:n], s.v[layer][:n]
        nb = -(-n // bs)
        t0 = perf()
        tr.key_block_summary(k, bs, block_begin=nb - 1, block_end=nb,
                             kmin=self.kmin[layer], kmax=self.kmax[layer])
        t1 = perf()
        sel = tr.quest_select_blocks(q, self.kmin[layer][:nb], self.kmax[layer][:nb], self.k_blocks,
                                     keep_first=1, keep_last=1)
        t2 = perf()
        tr.attention(q, k, v, block_size=bs, query_block_size=1, block_offsets=sel.block_offsets,
                     block_ids=sel.block_ids, block_lists="per_q_head", out_dtype="f32", out=out)
        t3 = perf()
        T["summary"] += t1 - t0
        T["select"] += t2 - t1
        T["attn"] += t3 - t2
        self.sel[layer] = sel
        c = self.cfg
        ids = sel.block_ids.reshape(c.n_heads, sel.k)
        group = c.n_heads // c.n_kv_heads
        self.rows_read += sum(_keys_in(np.unique(ids[g * group:(g + 1) * group]), bs, n)
                              for g in range(c.n_kv_heads))
        self.extra_bytes += 2 * nb * c.n_kv_heads * c.head_dim * 4  # the f32 min/max summaries

    def replay(self, layer, q, s, n, out):
        if layer < self.dense_layers:
            return super().replay(layer, q, s, n, out)
        sel = self.sel[layer]
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], block_size=self.block, query_block_size=1,
                     block_offsets=sel.block_offsets, block_ids=sel.block_ids, block_lists="per_q_head",
                     out_dtype="f32", out=out)

    def last_keys(self, layer, s, n):
        if layer < self.dense_layers:
            return None
        sel = self.sel[layer]
        return _block_rows(sel.block_ids.reshape(self.cfg.n_heads, sel.k), self.block, n)


class H2O(Method):
    """Heavy-hitter oracle: accumulated attention mass + a recent window, compacted."""

    name = "h2o"
    evicts = True

    def __init__(self, model, budget):
        super().__init__(model, budget)
        self.recent = budget // 2
        self.acc: List[np.ndarray] = []

    def _keep(self, acc: np.ndarray, n: int) -> np.ndarray:
        """Per KV head the budget keys to keep: the newest ``recent`` and the heaviest of
        the older ones, ascending (``[kv, budget]`` uint32)."""
        return tr.topk(acc[:, :n], self.budget, keep_last=self.recent)

    def _evict(self, layer, s, n):
        acc = self.acc[layer]
        keep = self._keep(acc, n)
        t0 = perf()
        tr.kv_compact(s.k[layer][:n], keep, per_head=True)
        tr.kv_compact(s.v[layer][:n], keep, per_head=True)
        tr.kv_compact(acc[:, :n, None], keep, layout="head_major", per_head=True)
        return t0

    def prepare(self, s):
        c, B = self.cfg, self.budget
        if s.mass is None:
            raise ValueError("h2o needs the prefill's attention mass (prefill(..., mass=True))")
        self.acc = []
        for layer in range(c.n_layers):
            acc = np.zeros((c.n_kv_heads, max(s.capacity, B + 1)), np.float32)
            acc[:, : s.n] = s.mass[layer]
            self.acc.append(acc)
            if s.n > B:
                self._evict(layer, s, s.n)
        if s.n > B:
            s.n = B
        s.shrink(B + 1)
        self.acc = [np.ascontiguousarray(a[:, : B + 1]) for a in self.acc]

    def attend(self, layer, q, s, n, out):
        T = self.timers
        acc = self.acc[layer]
        m = np.zeros((self.cfg.n_kv_heads, n), np.float32)
        t0 = perf()
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], out_dtype="f32", out=out, mass=m,
                     mass_per_head=True)
        t1 = perf()
        T["attn"] += t1 - t0
        acc[:, :n] += m
        self.rows_read += n * self.cfg.n_kv_heads
        if n > self.budget:
            t2 = perf()
            t3 = self._evict(layer, s, n)
            t4 = perf()
            T["select"] += t3 - t2
            T["compact"] += t4 - t3

    def replay(self, layer, q, s, n, out):
        # A call like attend's (with a mass output) over the cache as it is now: after an
        # eviction this step, the layer holds ``budget`` rows.
        n = min(n, self.budget)
        m = np.zeros((self.cfg.n_kv_heads, n), np.float32)
        tr.attention(q, s.k[layer][:n], s.v[layer][:n], out_dtype="f32", out=out, mass=m,
                     mass_per_head=True)

    def rows_after(self, s, n):
        return min(n, self.budget)


def make_method(model: Model, name: str, budget: Optional[int], context: int, *, block: int = BLOCK,
                dense_layers: int = DENSE_LAYERS) -> Method:
    """A decode method by name; ``context`` is the longest cache it will see."""
    check_budget(name, budget, context, block)
    if name == "dense":
        return Dense(model, None)
    if name == "sink":
        return SinkWindow(model, int(budget), block)
    if name == "quest":
        return Quest(model, int(budget), block, dense_layers)
    return H2O(model, int(budget))


def prefill(model: Model, ids: np.ndarray, capacity: Optional[int] = None, mass: bool = False,
            timers: Optional[Timers] = None, all_logits: bool = False):
    """Causal prefill of ``ids`` through the library (positions ``0 .. n-1``).
    Returns the sequence (cache filled) and the last position's logits (every
    position's with ``all_logits``). ``mass``: keep each layer's attention mass per KV
    head (H2O's heavy hitters)."""
    c = model.cfg
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.size
    model.check_length(n)
    cap = n if capacity is None else int(capacity)
    if cap < n or cap > c.n_ctx:
        raise ValueError(f"capacity {cap} must hold the {n} prompt tokens and at most the model's "
                         f"{c.n_ctx} positions")
    s = Sequence(model, cap)
    if mass:
        s.mass = []
    pos = np.arange(n)
    pos32 = pos.astype(np.uint32)
    x = model.embed[ids]
    for layer in range(c.n_layers):
        q, k, v = model.qkv(layer, x, pos)
        s.k[layer][:n] = k
        s.v[layer][:n] = v
        t0 = perf()
        r = tr.attention(q.astype(F16), s.k[layer][:n], s.v[layer][:n], causal=True, q_positions=pos32,
                         k_positions=pos32, out_dtype="f32", return_mass=mass, mass_per_head=mass)
        if timers is not None:
            timers["attn"] += perf() - t0
        if mass:
            s.mass.append(r.mass)
            r = r.out
        model.finish_layer(layer, x, r)
    s.n = s.pos = n
    return s, (model.logits(x) if all_logits else model.logits(x[-1:])[0])


def step(model: Model, seqs: Seq[Sequence], methods: Seq[Method], tokens, probe=None) -> np.ndarray:
    """One decode step of ``len(seqs)`` sequences together (the projections are one
    matrix product for all; each sequence attends over its own cache with its own
    method instance). Returns the logits ``[b, vocab]``. ``probe(layer, i, q16, seq,
    n, method)``, when given, is called after each attention (checks, comparisons)."""
    c = model.cfg
    b = len(seqs)
    tokens = np.asarray(tokens, dtype=np.int64).reshape(b)
    pos = np.array([s.pos for s in seqs])
    for s in seqs:
        if s.pos >= c.n_ctx:
            raise ValueError(f"position {s.pos} is past the model's {c.n_ctx} positions")
        if s.n >= s.capacity:
            raise ValueError(f"the cache is full ({s.capacity} rows)")
    x = model.embed[tokens]
    out = np.empty((b, c.n_heads, c.head_dim), np.float32)
    for layer in range(c.n_layers):
        q, k, v = model.qkv(layer, x, pos)
        q16 = q.astype(F16)
        for i, (s, m) in enumerate(zip(seqs, methods)):
            s.k[layer][s.n] = k[i]
            s.v[layer][s.n] = v[i]
            m.attend(layer, q16[i:i + 1], s, s.n + 1, out[i:i + 1])
            if probe is not None:
                probe(layer, i, q16[i:i + 1], s, s.n + 1, m)
        model.finish_layer(layer, x, out)
    for s, m in zip(seqs, methods):
        s.n = m.rows_after(s, s.n + 1)
        s.pos += 1
    return model.logits(x)


def attention_reference(q16: np.ndarray, k16: np.ndarray, v16: np.ndarray):
    """Decode attention in float64 numpy (GQA): the exact value of what the library
    computes from the same f16 inputs, and the library's documented error bound
    ``2^-17 (1 + A + n/64) vmax + 2^-24 |exact|`` per element."""
    q = q16.astype(np.float64)[0]  # [H, d]
    k = k16.astype(np.float64)
    v = v16.astype(np.float64)
    H, d = q.shape
    g = k.shape[1]
    kk = np.repeat(k, H // g, axis=1)  # [n, H, d]
    vv = np.repeat(v, H // g, axis=1)
    scale = 1.0 / np.sqrt(d)
    s = np.einsum("hd,nhd->hn", q, kk) * scale
    p = np.exp(s - s.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    exact = np.einsum("hn,nhd->hd", p, vv)
    a = (np.einsum("hd,nhd->hn", np.abs(q), np.abs(kk)) * scale).max(axis=1)  # [H]
    n = k.shape[0]
    vmax = np.abs(v).max()
    bound = 2.0 ** -17 * (1 + a[:, None] + n / 64) * vmax + 2.0 ** -24 * np.abs(exact)
    return exact[None], bound[None]


def methods_for(model: Model, specs: Seq, context: int, **kw) -> Dict[str, Method]:
    """``{label: method}`` for ``(name, budget)`` pairs."""
    out = {}
    for name, budget in specs:
        m = make_method(model, name, budget, context, **kw)
        out[m.label()] = m
    return out
