"""all-MiniLM-L6-v2 with dynamic token routing through tokenroute.

The encoder of model.py in float32, with attention through the library's attention
kernel (``tokenroute.attention``, whose mass output gives each token's importance: the
attention it received, summed over queries and heads) and GEMMs through numpy
(single-threaded OpenBLAS: the environment is set before numpy is imported).

Methods (one sequence at a time, no padding):

- ``dense``: every token through every layer (``attention="numpy"``: the same f32
  encoder with numpy attention, for timing the kernel against numpy).
- token pruning (PoWER-BERT / LTP style, training-free): after the layers of a
  schedule, keep CLS and the top-k tokens by attention mass received
  (``tokenroute.topk``), compact hidden states and original positions in place
  (``tokenroute.compact_rows``), continue with fewer tokens; mean-pool the survivors
  (``pool="survivors"``) or every token, a pruned one with its state when it was
  pruned (``pool="all"``; the same compute).
- token pruning with carried pooling weight (``prune(..., carry=True)``): as above,
  and each pruned token hands its pooling weight to its most similar kept token
  (``"nearest"``), so the mean pool still counts every original token.
- token merging (ToMe-style bipartite soft matching, training-free, :meth:`Encoder.merge`):
  after the layers of a schedule, the ``n - k`` odd-position tokens best matched to an
  even-position token (cosine of the states) are merged into it by a size-weighted
  average (``tokenroute.gather_rows`` + gated ``tokenroute.scatter_add_rows``), the rest
  compacted (``tokenroute.compact_rows``); sizes are tracked, the attention adds
  log(size) to each key's logits (proportional attention, through an extra head
  dimension), the embedding is the size-weighted mean.
- layer skipping (Mixture-of-Depths style): at the layers of a schedule only the top-k
  tokens by the latest attention mass go through the layer (``tokenroute.gather_rows``
  -> layer -> ``tokenroute.scatter_add_rows`` of the delta, gate 1); the others keep
  their state and are still pooled.
- learned router (``S = sigmoid(w . h + b)``): per pruning layer, w and b fitted by
  logistic regression (:func:`fit_routers`) to predict the tokens the attention-mass
  rule keeps; routed with ``tokenroute.score`` + ``tokenroute.threshold`` (a tau per
  layer calibrated on the training texts to the schedule's keep ratio).

A schedule is a dict ``{layer: keep_ratio}``: after layer ``l`` (0-based) keep
``ceil(ratio * n)`` tokens of the original ``n`` (pruning, merging, router), or run layer ``l``
on ``ceil(ratio * n)`` tokens (layer skipping). Ratios must be in (0, 1].
"""
import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
    os.environ[_v] = "1"
for _v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_v, None)

import math  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(0, str(_HERE.parents[1] / "python"))

import tokenroute as tr  # noqa: E402
from model import MAX_POSITIONS, MiniLM, gelu, layer_norm  # noqa: E402

F32 = np.float32


def check_ids(ids):
    """The token ids of one text, checked: an error (never silent truncation) for an
    empty sequence or one longer than the position table."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError("empty text: no tokens to encode")
    if ids.size > MAX_POSITIONS:
        raise ValueError(f"text has {ids.size} tokens; the model's position table holds {MAX_POSITIONS}")
    return ids


def check_schedule(schedule, n_layers):
    """A {layer: keep_ratio} schedule, checked: layers in range, ratios in (0, 1]."""
    out = {}
    for layer, ratio in dict(schedule).items():
        if not (isinstance(layer, (int, np.integer)) and 0 <= layer < n_layers):
            raise ValueError(f"schedule layer {layer!r} outside 0..{n_layers - 1}")
        r = float(ratio)
        if not (0.0 < r <= 1.0) or math.isnan(r):
            raise ValueError(f"keep ratio {ratio!r} at layer {layer} outside (0, 1]")
        out[int(layer)] = r
    return out


def keep_count(ratio, n):
    """Tokens kept of an original n at a keep ratio: ceil(ratio * n), at least 1 (CLS)."""
    return max(1, min(n, math.ceil(ratio * n)))


class Encoder:
    """The float32 encoder with routing. ``m``: a model.MiniLM (loaded when None)."""

    def __init__(self, m=None):
        self.m = m or MiniLM()
        self.H, self.dh, self.D = self.m.heads, self.m.d_h, self.m.hidden
        self.eps = F32(self.m.eps)
        self.routers = {}  # schedule name -> {layer: (w, b, tau)}

    # --- the pieces

    def embed(self, ids):
        ids = check_ids(ids)
        return self.m.embed(ids).astype(F32, copy=False)

    def attention(self, qkv, want_mass, kind="lib", log_size=None):
        """Context [n, D] (and the mass [n] each key received, or None).
        ``log_size``: None, or a per-key bias [n] added to every query's logits
        (proportional attention of merged tokens: log of the tokens each row stands for).
        The attention kernel has no bias input: the bias rides in an extra head
        dimension (q gets a 1, k gets bias / scale, v a 0) at the explicit scale of the
        real head dimension."""
        n, H, dh = qkv.shape[0], self.H, self.dh
        if log_size is not None and kind == "lib":
            aug = np.zeros((3, n, H, dh + 1), F32)
            for i in range(3):
                aug[i, :, :, :dh] = qkv[:, i * self.D:(i + 1) * self.D].reshape(n, H, dh)
            aug[0, :, :, dh] = 1
            aug[1, :, :, dh] = (log_size * F32(math.sqrt(dh)))[:, None]
            r = tr.attention(aug[0], aug[1], aug[2], scale=1 / math.sqrt(dh), return_mass=want_mass)
            out, mass = (r.out, r.mass) if want_mass else (r, None)
            return np.ascontiguousarray(out[:, :, :dh]).reshape(n, self.D), mass
        if kind == "numpy":
            q, k, v = (qkv[:, i * self.D:(i + 1) * self.D].reshape(n, H, dh).transpose(1, 0, 2) for i in range(3))
            s = (q @ k.transpose(0, 2, 1)) * F32(1 / math.sqrt(dh))
            s -= s.max(-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(-1, keepdims=True)
            mass = p.sum((0, 1)) if want_mass else None
            return (p @ v).transpose(1, 0, 2).reshape(n, self.D), mass
        q3 = qkv[:, : self.D].reshape(n, H, dh)  # strided views of the fused projection
        k3 = qkv[:, self.D: 2 * self.D].reshape(n, H, dh)
        v3 = qkv[:, 2 * self.D:].reshape(n, H, dh)
        if want_mass:
            out, _, mass = tr.attention(q3, k3, v3, return_mass=True)
            return out.reshape(n, self.D), mass
        return tr.attention(q3, k3, v3).reshape(n, self.D), None

    def layer(self, L, h, want_mass=False, kind="lib"):
        """One BERT layer over the rows of h ([n, D] f32): (new h, mass or None)."""
        h, mass, _ = self.layer_keys(L, h, want_mass, kind)
        return h, mass

    def layer_keys(self, L, h, want_mass=False, kind="lib", log_size=None):
        """One BERT layer: (new h, mass or None, the layer's keys [n, D] (a view))."""
        qkv = h @ L["wqkv"] + L["bqkv"]
        ctx, mass = self.attention(qkv, want_mass, kind, log_size)
        h = layer_norm(h + (ctx @ L["wo"] + L["bo"]), *L["ln1"], self.eps)
        ff = gelu(h @ L["w1"] + L["b1"]) @ L["w2"] + L["b2"]
        return layer_norm(h + ff, *L["ln2"], self.eps), mass, qkv[:, self.D: 2 * self.D]

    @staticmethod
    def pool(h_sum, count):
        e = h_sum / count
        return (e / np.linalg.norm(e)).astype(F32)

    # --- the methods

    def dense(self, ids, attention="lib"):
        h = self.embed(ids)
        for L in self.m.layers:
            h, _ = self.layer(L, h, kind=attention)
        return self.pool(h.sum(0), h.shape[0])

    def prune(self, ids, schedule, trace=None, importance="mass", carry=False):
        """Token pruning by attention mass. Returns {"survivors": emb, "all": emb,
        "tokens": tokens per layer}. ``trace``: a list receiving (layer, h, kept
        original positions, keep mask over the current tokens) at every pruning
        point (training data for the router). ``importance="uniform"``: a baseline
        that keeps evenly spaced tokens instead (no attention mass). ``carry``: also
        hand each pruned token's pooling weight to its most similar kept token (cosine
        of the states when pruned) and return the embeddings ``"nearest"`` (the pooled
        mean counts that kept token's final state once more per pruned token) and
        ``"follow"`` (the pruned token's state when pruned plus the change its kept
        neighbour goes through after that)."""
        if importance not in ("mass", "uniform"):
            raise ValueError(f"importance must be 'mass' or 'uniform', not {importance!r}")
        sched = check_schedule(schedule, len(self.m.layers))
        h = self.embed(ids)
        n0 = h.shape[0]
        pos = np.arange(n0, dtype=np.int64)
        dropped = np.zeros(self.D, F32)
        weight = np.ones(n0, F32) if carry else None
        offset = np.zeros(self.D, F32)
        tokens = []
        for li, L in enumerate(self.m.layers):
            tokens.append(h.shape[0])
            h, mass = self.layer(L, h, want_mass=li in sched and importance == "mass")
            if li in sched:
                n = h.shape[0]
                k = min(n, keep_count(sched[li], n0))
                if k < n:
                    if importance == "uniform":
                        mass = np.zeros(n, F32)
                        mass[np.linspace(0, n - 1, k).round().astype(np.int64)] = 1
                    keep = tr.topk(mass, k, keep_first=1)  # CLS always kept
                    mask = tr.indices_to_mask(keep, n)
                    if trace is not None:
                        trace.append((li, h.copy(), mask.copy()))
                    dropped += h[~mask].sum(0)
                    if carry:
                        gone = np.flatnonzero(~mask)
                        hk = tr.gather_rows(h, keep)
                        hd = h[gone]
                        kn = hk / np.linalg.norm(hk, axis=1, keepdims=True)
                        nn_ = (hd @ kn.T).argmax(1)  # the most similar kept token
                        wd = weight[gone]
                        offset += (wd[:, None] * (hd - hk[nn_])).sum(0)
                        wk = weight[keep].copy()
                        np.add.at(wk, nn_, wd)
                        weight = wk
                    tr.compact_rows(h, keep)
                    tr.compact_rows(pos, keep)
                    h, pos = h[:k], pos[:k]
                elif trace is not None:
                    trace.append((li, h.copy(), np.ones(n, bool)))
        hs = h.sum(0)
        r = {"survivors": self.pool(hs, h.shape[0]), "all": self.pool(hs + dropped, n0),
             "tokens": tokens, "positions": pos}
        if carry:
            hw = (weight[:, None] * h).sum(0)
            r.update(nearest=self.pool(hw, n0), follow=self.pool(hw + offset, n0), weights=weight)
        return r

    def skip(self, ids, schedule):
        """Mixture-of-Depths layer skipping: at a scheduled layer only the top-k tokens
        by the latest attention mass (CLS forced) go through the layer; the delta is
        scatter-added back (gate 1); the others keep their state."""
        sched = check_schedule(schedule, len(self.m.layers))
        h = self.embed(ids)
        n = h.shape[0]
        imp = None
        tokens = []
        for li, L in enumerate(self.m.layers):
            k = keep_count(sched[li], n) if li in sched else n
            if k >= n or imp is None:
                tokens.append(n)
                h, mass = self.layer(L, h, want_mass=True)
                imp = mass / F32(n)
                continue
            tokens.append(k)
            idx = tr.topk(imp, k, keep_first=1)
            sub = tr.gather_rows(h, idx)
            out, mass = self.layer(L, sub, want_mass=True)
            out -= sub  # the layer's delta
            tr.scatter_add_rows(h, idx, out)
            imp = imp.copy()
            imp[idx] = mass / F32(k)  # the selected tokens' importance, refreshed
        return {"all": self.pool(h.sum(0), n), "tokens": tokens}

    def route(self, ids, name, agreement=None):
        """Token pruning by the learned routers of ``self.routers[name]``
        (tokenroute.score + tokenroute.threshold, CLS forced), mean-pooling the
        survivors. ``agreement``: a list receiving, at every routing point, (kept by
        the router, kept by the mass rule) masks over the current tokens (the mass
        rule's top-k is computed then: slower, not for timing)."""
        routers = self.routers[name]
        h = self.embed(ids)
        n0 = h.shape[0]
        dropped = np.zeros(self.D, F32)
        tokens = []
        for li, L in enumerate(self.m.layers):
            tokens.append(h.shape[0])
            want = agreement is not None and li in routers
            h, mass = self.layer(L, h, want_mass=want)
            if li in routers:
                w, b, tau, ratio = routers[li]
                n = h.shape[0]
                s = tr.score(h, w, np.float32([b]))
                keep = tr.threshold(s, tau, keep_first=1)
                if agreement is not None:
                    k = min(n, keep_count(ratio, n0))
                    agreement.append((tr.indices_to_mask(keep, n), tr.indices_to_mask(tr.topk(mass, k, keep_first=1), n)))
                if keep.size < n:
                    mask = tr.indices_to_mask(keep, n)
                    dropped += h[~mask].sum(0)
                    tr.compact_rows(h, keep)
                    h = h[: keep.size]
        hs = h.sum(0)
        return {"survivors": self.pool(hs, h.shape[0]), "all": self.pool(hs + dropped, n0), "tokens": tokens}

    def merge(self, ids, schedule, metric="states", proportional=True, trace=None, renorm=False):
        """Token merging (ToMe-style bipartite soft matching, training-free). After the
        layers of the schedule, the current tokens split by position into destinations
        (even, CLS among them, never merged into) and sources (odd); each source is
        matched to its most similar destination (cosine of the layer's output states,
        ``metric="states"``, or of its keys, ``"keys"``), the ``n - k`` best
        matched sources (``tokenroute.topk`` of the match score) are merged into their
        destinations by a size-weighted average (``tokenroute.gather_rows`` of the
        sources, then ``tokenroute.scatter_add_rows`` with gate = size_src / size of the
        merged destination, in rounds of distinct destinations), and the rest is
        compacted (``tokenroute.compact_rows``, states and sizes). A merge step removes
        at most half of the current tokens, so a ratio below half the current count is
        clipped there. Every token keeps a size (the original tokens it stands for;
        the sizes always sum to n); the embedding is the size-weighted mean of the final
        states, and with ``proportional`` the attention adds log(size) to the logits of
        each key (ToMe's proportional attention). ``renorm``: rescale a merged row to the
        size-weighted mean norm of its parts (measured: +0.000-0.002 cosine; off by
        default). Returns {"all": emb, "tokens": tokens per layer, "sizes": final sizes,
        "positions": each row's destination position}. ``trace``: a list receiving
        (layer, number merged) per merge point."""
        if metric not in ("keys", "states"):
            raise ValueError(f"metric must be 'keys' or 'states', not {metric!r}")
        sched = check_schedule(schedule, len(self.m.layers))
        h = self.embed(ids)
        n0 = h.shape[0]
        size = np.ones(n0, F32)
        pos = np.arange(n0, dtype=np.int64)
        tokens = []
        merged_any = False
        for li, L in enumerate(self.m.layers):
            tokens.append(h.shape[0])
            ls = np.log(size) if proportional and merged_any else None
            h, _, keys = self.layer_keys(L, h, log_size=ls)
            if li in sched:
                n = h.shape[0]
                r = min(n - keep_count(sched[li], n0), (n - 1) // 2)
                if trace is not None:
                    trace.append((li, max(r, 0)))
                if r > 0:
                    x = keys if metric == "keys" else h
                    h, size, pos = self._merge_step(h, size, pos, x, r, renorm)
                    merged_any = True
        e = (size[:, None] * h).sum(0)
        return {"all": self.pool(e, n0), "tokens": tokens, "sizes": size, "positions": pos}

    @staticmethod
    def _merge_step(h, size, pos, x, r, renorm=False):
        """One bipartite merge of r sources (odd rows) into destinations (even rows,
        row 0 = CLS excluded as a destination). Returns the compacted (h, size, pos)."""
        n = h.shape[0]
        src = np.arange(1, n, 2)
        dst = np.arange(0, n, 2)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = xn[1::2] @ xn[0::2].T
        sim[:, 0] = -np.inf  # CLS is never a destination
        best = sim.argmax(1)
        score = sim[np.arange(src.size), best].astype(F32)
        chosen = tr.topk(score, r).astype(np.int64)  # the r best-matched sources
        s_idx, d_idx = src[chosen], dst[best[chosen]]
        total = size.copy()
        np.add.at(total, d_idx, size[s_idx])
        touched = np.unique(d_idx)
        if renorm:
            nrm = size * np.linalg.norm(h, axis=1)
            np.add.at(nrm, d_idx, nrm[s_idx])
        h[touched] *= (size[touched] / total[touched])[:, None]
        y = tr.gather_rows(h, s_idx)
        gate = (size[s_idx] / total[d_idx]).astype(F32)
        # scatter_add_rows needs distinct indices per call: round j takes the j-th
        # source of every destination.
        order = np.argsort(d_idx, kind="stable")
        ds = d_idx[order]
        first = np.searchsorted(ds, ds, side="left")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size) - first
        for j in range(int(rank.max()) + 1):
            sel = np.flatnonzero(rank == j)
            tr.scatter_add_rows(h, d_idx[sel], np.ascontiguousarray(y[sel]), gate=gate[sel])
        if renorm:
            h[touched] *= (nrm[touched] / total[touched] / np.linalg.norm(h[touched], axis=1))[:, None]
        size = total
        keep = np.flatnonzero(~tr.indices_to_mask(s_idx, n))
        k = tr.compact_rows(h, keep)
        tr.compact_rows(size, keep)
        tr.compact_rows(pos, keep)
        return h[:k], size[:k], pos[:k]

    # --- the learned router

    def fit_routers(self, name, schedule, train_ids, l2=1e-3, iters=12):
        """Fits w, b per pruning layer of ``schedule`` by logistic regression (Newton /
        IRLS in numpy, L2-regularized, on standardized features) to predict the tokens
        the attention-mass rule keeps, from the hidden states along the mass-pruned
        path of ``train_ids`` (CLS excluded: always kept). tau per layer: the score
        quantile that keeps the rule's fraction of the training tokens. Stores
        ``self.routers[name]`` and returns {layer: training accuracy}."""
        sched = check_schedule(schedule, len(self.m.layers))
        data = {li: ([], []) for li in sched}
        for ids in train_ids:
            trace = []
            self.prune(ids, sched, trace=trace)
            for li, h, mask in trace:
                data[li][0].append(h[1:])
                data[li][1].append(mask[1:])
        routers, acc = {}, {}
        for li in sorted(sched):
            X = np.concatenate(data[li][0]).astype(np.float64)
            y = np.concatenate(data[li][1]).astype(np.float64)
            mu, sd = X.mean(0), X.std(0) + 1e-6
            Z = np.hstack([(X - mu) / sd, np.ones((X.shape[0], 1))])
            beta = np.zeros(Z.shape[1])
            reg = l2 * X.shape[0] * np.eye(Z.shape[1])
            reg[-1, -1] = 0
            for _ in range(iters):
                p = 1 / (1 + np.exp(-(Z @ beta)))
                g = Z.T @ (p - y) + reg @ beta
                Hs = (Z * (p * (1 - p))[:, None]).T @ Z + reg
                beta -= np.linalg.solve(Hs, g)
            w = (beta[:-1] / sd).astype(F32)
            b = float(beta[-1] - (beta[:-1] * mu / sd).sum())
            s = 1 / (1 + np.exp(-(X @ w + b)))
            frac = y.mean()
            tau = float(np.quantile(s, 1 - frac)) if 0 < frac < 1 else (0.0 if frac >= 1 else 1.0)
            routers[li] = (w, b, F32(tau), sched[li])
            acc[li] = float(((s > tau) == (y > 0.5)).mean())
        self.routers[name] = routers
        return acc
