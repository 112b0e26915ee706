"""Long-context decode of SmolLM2-135M-Instruct with sparse attention and KV eviction
through tokenroute: quality against dense, speed against the library's dense decode,
torch's SDPA on the same f16 cache and llama.cpp. Writes results.md and results.png.

    python examples/llm/evaluate.py            # the full evaluation (hours on one core;
                                               # resumable: results are cached per text)
    python examples/llm/evaluate.py --quick    # the checks (test_quick.py), writes nothing

Teacher-forced decode: each text is ``context + 1`` tokens; the first ``context -
steps`` are prefilled densely (causal attention through the library), then the last
``steps`` true tokens are fed one at a time with each method, the next token's log
probability and the argmax recorded. Every method of a text runs in lockstep (one step
of each method in turn, the order rotating), so that their timings share the machine's
state. Results go to ``--cache`` as each text finishes (one JSON file per text, mode,
context and method); a rerun reuses them.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)  # the benchmark process runs OpenBLAS's own detection

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Dict, List, Optional  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import model as M  # noqa: E402  (sets the BLAS thread variables before numpy)
import numpy as np  # noqa: E402

import corpus  # noqa: E402
import engine as E  # noqa: E402
import overhead  # noqa: E402
import tokenroute as tr  # noqa: E402

CACHE_VERSION = 1
perf = time.perf_counter


# -- helpers ----------------------------------------------------------------------------

def log_softmax_at(logits: np.ndarray, target: int) -> float:
    z = logits.astype(np.float64)
    m = z.max()
    return float(z[target] - m - np.log(np.exp(z - m).sum()))


class Probe:
    """At chosen steps, times torch's decode attention over the same f16 cache beside
    the library's call, per layer, summed over the layers of a step: for dense, torch's
    dense SDPA and the library's dense call; for the other methods, torch's gather of the
    method's keys (index_select, or advanced indexing per query head) + SDPA (H2O: SDPA
    over its compacted cache) and the method's own attention call again. Back to back,
    right after the step's own call, so both read a warm cache."""

    def __init__(self, model: M.Model):
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.F = torch.nn.functional
        c = model.cfg
        self.kv_of_q = torch.arange(c.n_heads) // (c.n_heads // c.n_kv_heads)
        self.active = False
        self.rec: Dict[str, Dict[str, float]] = {}

    def __call__(self, layer, i, q16, s, n, m):
        if not self.active:
            return
        torch, F = self.torch, self.F
        r = self.rec.setdefault(m.label(), {"torch": 0.0, "lib": 0.0})
        n = m.rows_after(s, n)  # H2O: the rows left after this layer's eviction
        kh = torch.from_numpy(np.ascontiguousarray(s.k[layer][:n].transpose(1, 0, 2)))  # torch's layout
        vh = torch.from_numpy(np.ascontiguousarray(s.v[layer][:n].transpose(1, 0, 2)))
        qt = torch.from_numpy(q16).permute(1, 0, 2)[None]  # [1, H, 1, d]
        rows = m.last_keys(layer, s, n)
        ri = None if rows is None else torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))
        t0 = perf()
        if ri is None:
            F.scaled_dot_product_attention(qt, kh[None], vh[None], enable_gqa=True)
        elif ri.shape[0] == 1:  # one list shared by every head
            ks, vs = kh.index_select(1, ri[0]), vh.index_select(1, ri[0])
            F.scaled_dot_product_attention(qt, ks[None], vs[None], enable_gqa=True)
        else:  # per query head
            ks, vs = kh[self.kv_of_q[:, None], ri], vh[self.kv_of_q[:, None], ri]
            F.scaled_dot_product_attention(qt, ks[None], vs[None])
        t1 = perf()
        out = np.empty(q16.shape, np.float32)
        t2 = perf()
        m.replay(layer, q16, s, n, out)
        t3 = perf()
        r["torch"] += t1 - t0
        r["lib"] += t3 - t2

    def take(self) -> Dict[str, Dict[str, float]]:
        out, self.rec = self.rec, {}
        return out


class Record:
    def __init__(self, label, m: E.Method, text: str, context: int, batch: int):
        self.d = {"label": label, "method": m.name, "budget": m.budget, "context": context,
                  "text": text, "batch": batch, "logprob": [], "argmax": [], "step_s": [],
                  "lib_s": [], "attn_s": [], "probe": [], "timers": {}, "rows_read": 0,
                  "extra_bytes": 0, "cache_bytes": 0}


def _cache_path(cache: pathlib.Path, *parts) -> pathlib.Path:
    key = "_".join(str(p) for p in parts)
    h = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache / f"v{CACHE_VERSION}_{key.replace('/', '-').replace(' ', '-')[:80]}_{h}.json"


def lockstep(model, seqs_by_label, methods_by_label, ids_batch, steps, probe: Optional[Probe],
             probe_steps=(), texts=("",), context=0):
    """Teacher-forced decode of ``steps`` tokens for every method in lockstep. ``ids_batch``:
    ``[b, context + 1]``; the sequences hold the prefill of the first ``context - steps``.
    Returns ``{label: record dict}``."""
    b = ids_batch.shape[0]
    labels = list(methods_by_label)
    recs = {}
    for lab in labels:
        ms = methods_by_label[lab]
        r = Record(lab, ms[0], "; ".join(texts), context, b)
        r.d["cache_bytes"] = sum(s.nbytes() for s in seqs_by_label[lab])
        recs[lab] = r
    L = ids_batch.shape[1] - 1
    start = L - steps
    for i in range(steps):
        tok = ids_batch[:, start + i]
        tgt = ids_batch[:, start + i + 1]
        order = labels[i % len(labels):] + labels[: i % len(labels)]
        if probe is not None:
            probe.active = i in probe_steps
        for lab in order:
            ms, ss, rec = methods_by_label[lab], seqs_by_label[lab], recs[lab].d
            lib0 = sum(m.timers.library() for m in ms)
            att0 = sum(m.timers["attn"] for m in ms)
            t0 = perf()
            logits = E.step(model, ss, ms, tok, probe=probe)
            t1 = perf()
            rec["step_s"].append(t1 - t0)
            rec["lib_s"].append(sum(m.timers.library() for m in ms) - lib0)
            rec["attn_s"].append(sum(m.timers["attn"] for m in ms) - att0)
            rec["logprob"].append([log_softmax_at(logits[j], int(tgt[j])) for j in range(b)])
            rec["argmax"].append([int(x) for x in logits.argmax(axis=1)])
        if probe is not None and probe.active:
            got = probe.take()
            for lab, v in got.items():
                recs[lab].d["probe"].append(v)
    for lab in labels:
        ms, rec = methods_by_label[lab], recs[lab].d
        tim = E.Timers()
        for m in ms:
            for k, v in m.timers.items():
                tim[k] += v
        rec["timers"] = dict(tim)
        rec["rows_read"] = int(sum(m.rows_read for m in ms))
        rec["extra_bytes"] = int(sum(m.extra_bytes for m in ms))
        rec["cache_bytes_end"] = sum(s.nbytes() for s in seqs_by_label[lab])
    return {lab: recs[lab].d for lab in labels}


# -- prefill store ------------------------------------------------------------------------

def prefill_cached(model, ids, capacity, cache: Optional[pathlib.Path], tag: str):
    """The dense prefill of ``ids`` (with the attention mass H2O needs), from the disk
    cache when there (``tag`` names the text), else computed and stored."""
    path = None
    if cache is not None:
        path = cache / "prefill" / f"v{CACHE_VERSION}_{tag}_{len(ids)}.npz"
        if path.exists():
            z = np.load(path)
            s = E.Sequence(model, capacity)
            n = int(z["n"])
            if np.array_equal(z["ids"], ids):
                for layer in range(model.cfg.n_layers):
                    s.k[layer][:n] = z["k"][layer]
                    s.v[layer][:n] = z["v"][layer]
                s.mass = [z["mass"][layer] for layer in range(model.cfg.n_layers)]
                s.n = s.pos = n
                return s, z["logits"]
    t0 = perf()
    s, logits = E.prefill(model, ids, capacity, mass=True)
    print(f"    prefill {len(ids)} tokens: {perf() - t0:.1f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=ids, n=s.n, logits=logits, k=np.stack([x[: s.n] for x in s.k]),
                 v=np.stack([x[: s.n] for x in s.v]), mass=np.stack(s.mass))
        tmp.rename(path)
    return s, logits


# -- the evaluation pieces -------------------------------------------------------------------

def specs_for(context: int, args) -> List:
    """``(name, budget, block, dense_layers)`` of every method run at ``context``: dense,
    sink / quest / h2o at each budget below the context (a budget of the whole context
    is dense), and the ``--variants`` of Quest."""
    out = [("dense", None, args.block, args.dense_layers)]
    for name in ("sink", "quest", "h2o"):
        for b in args.budgets:
            if b < context:
                out.append((name, b, args.block, args.dense_layers))
    for v in args.variants:
        if v[1] < context and v not in out:
            out.append(v)
    return out


def label_of(model, spec, context) -> str:
    return E.make_method(model, spec[0], spec[1], context, block=spec[2], dense_layers=spec[3]).label()


def make(model, spec, context):
    return E.make_method(model, spec[0], spec[1], context, block=spec[2], dense_layers=spec[3])


def run_single(model, args, cache, probe, context, texts, results=None, done=None):
    """One sequence at a time, every method in lockstep; cached per (context, text,
    method). Fills ``results`` (``{label: [record per text]}``); ``done()`` is called
    after each text."""
    specs = specs_for(context, args)
    results = {} if results is None else results
    for ti, text in enumerate(texts):
        paths = {}
        missing = []
        for spec in specs:
            lab = label_of(model, spec, context)
            p = _cache_path(cache, "single", context, args.steps, text.source, lab)
            paths[lab] = p
            if p.exists():
                results.setdefault(lab, []).append(json.loads(p.read_text()))
            else:
                missing.append(spec)
        if not missing:
            continue
        if args.report_only:  # what is cached, nothing computed (a text without dense: left out)
            if specs[0] in missing:
                for spec in specs:
                    lab = label_of(model, spec, context)
                    if spec not in missing:
                        results[lab].pop()
                        if not results[lab]:
                            del results[lab]
            continue
        if specs[0] not in missing:
            missing.insert(0, specs[0])
            results["dense"].pop()  # recomputed beside the others
        print(f"  [{context}] text {ti + 1}/{len(texts)} ({text.source}): {len(missing)} methods", flush=True)
        base, _ = prefill_cached(model, text.ids[: context - args.steps], context, cache,
                                 f"{context}_{ti}_{text.source}")
        seqs, meths = {}, {}
        for j, spec in enumerate(missing):
            m = make(model, spec, context)
            s = base if j == len(missing) - 1 else base.copy()
            m.prepare(s)
            seqs[m.label()], meths[m.label()] = [s], [m]
        base = None
        t0 = perf()
        probe_steps = set(range(0, args.steps, max(args.steps // args.probes, 1))) if args.probes else set()
        recs = lockstep(model, seqs, meths, text.ids[None], args.steps, probe, probe_steps,
                        (text.source,), context)
        print(f"    {args.steps} steps x {len(missing)} methods: {perf() - t0:.0f} s", flush=True)
        for lab, rec in recs.items():
            paths[lab].write_text(json.dumps(rec))
            results.setdefault(lab, []).append(rec)
        seqs = meths = None
        if done is not None:
            done()
    return results


def run_batch(model, args, cache, context, texts):
    """Eight sequences decoding together (one projection GEMM for all per step)."""
    specs = [("dense", None, args.block, args.dense_layers)] + [
        (n, args.batch_budget, args.block, args.dense_layers) for n in ("sink", "quest", "h2o")
        if args.batch_budget < context]
    paths = {}
    results = {}
    for spec in specs:
        lab = label_of(model, spec, context)
        p = _cache_path(cache, "batch", context, args.steps, len(texts), lab)
        paths[lab] = p
        if p.exists():
            results[lab] = json.loads(p.read_text())
    if len(results) == len(specs) or args.report_only:
        return results if "dense" in results else {}
    print(f"  [{context}] {len(texts)} sequences together: {', '.join(paths)}", flush=True)
    bases = [prefill_cached(model, t.ids[: context - args.steps], context, cache,
                            f"{context}_{ti}_{t.source}")[0] for ti, t in enumerate(texts)]
    seqs, meths = {}, {}
    for j, spec in enumerate(specs):
        ms = [make(model, spec, context) for _ in texts]
        ss = bases if j == len(specs) - 1 else [x.copy() for x in bases]
        for m, s in zip(ms, ss):
            m.prepare(s)
        seqs[ms[0].label()], meths[ms[0].label()] = ss, ms
    bases = None
    ids = np.stack([t.ids for t in texts])
    t0 = perf()
    recs = lockstep(model, seqs, meths, ids, args.steps, None, (), tuple(t.source for t in texts), context)
    print(f"    {args.steps} steps x {len(specs)} methods: {perf() - t0:.0f} s", flush=True)
    for lab, rec in recs.items():
        paths[lab].write_text(json.dumps(rec))
    return recs


def run_passkey(model, args, cache, context):
    """Passkey retrieval at 10 depths: dense prefill of everything before the question,
    the question fed with each method, then 6 greedy tokens with it."""
    specs = specs_for(context, args)
    p = _cache_path(cache, "passkey", context, ",".join(label_of(model, s, context) for s in specs))
    if p.exists():
        return json.loads(p.read_text())
    if args.report_only:
        return None
    print(f"  [{context}] passkey", flush=True)
    rng = np.random.default_rng(context)
    out = {"depths": [], "keys": [], "answers": {}}
    for depth in np.linspace(0.0, 1.0, 10):
        key = str(int(rng.integers(10000, 100000)))
        pk = corpus.passkey(model, context, float(depth), key)
        n_pre = pk.ids.size - pk.n_question
        base, _ = E.prefill(model, pk.ids[:n_pre], context, mass=True)
        out["depths"].append(float(depth))
        out["keys"].append(key)
        for j, spec in enumerate(specs):
            m = make(model, spec, context)
            s = base if j == len(specs) - 1 else base.copy()
            m.prepare(s)
            logits = None
            for tok in pk.ids[n_pre:]:
                logits = E.step(model, [s], [m], [tok])
            gen = []
            for _ in range(6):
                tok = int(logits[0].argmax())
                gen.append(tok)
                if s.pos >= context:
                    break
                logits = E.step(model, [s], [m], [tok])
            out["answers"].setdefault(m.label(), []).append(model.decode(gen))
    p.write_text(json.dumps(out))
    return out


def passkey_hit(answer: str, key: str) -> bool:
    digits = "".join(ch for ch in answer if ch.isdigit() or ch == " ").split()
    return bool(digits) and digits[0] == key


# -- llama.cpp --------------------------------------------------------------------------------

def run_llamacpp(model, args, cache, ids):
    """llama.cpp (llama-cpp-python) on the same GGUF, one thread, f16 KV cache, flash
    attention on and off: the decode step time at each context (a single-token eval
    after a prefill to that context; median of ``reps``)."""
    p = _cache_path(cache, "llamacpp", ",".join(map(str, args.llama_contexts)), args.llama_reps)
    if p.exists():
        return json.loads(p.read_text())
    if args.report_only:
        return None
    try:
        import llama_cpp
    except ImportError:
        print("  llama-cpp-python is not installed: no llama.cpp rows", flush=True)
        return None
    print("  llama.cpp", flush=True)
    out = {"version": getattr(llama_cpp, "__version__", "?"), "flash": {}, "reps": args.llama_reps}
    ctxs = sorted(args.llama_contexts)
    toks = [int(t) for t in ids[: ctxs[-1]]]
    for flash in (True, False):
        llm = llama_cpp.Llama(model_path=str(model.path), n_ctx=ctxs[-1], n_threads=1, n_threads_batch=1,
                              n_batch=512, flash_attn=flash, type_k=1, type_v=1, verbose=False,
                              logits_all=False)
        llm.reset()
        steps = {}
        for L in ctxs:
            if llm.n_tokens < L - 1:
                llm.eval(toks[llm.n_tokens: L - 1])
            times = []
            for _ in range(args.llama_reps):
                llm.n_tokens = L - 1  # the next eval overwrites position L - 1
                t0 = perf()
                llm.eval([toks[L - 1]])
                times.append(perf() - t0)
            steps[str(L)] = float(np.median(times))
            print(f"    flash={flash} context {L}: {steps[str(L)] * 1e3:.1f} ms", flush=True)
        out["flash"][str(flash)] = steps
        del llm
    p.write_text(json.dumps(out))
    return out


# -- summaries ---------------------------------------------------------------------------------

def _figures(recs: List[dict], row_bytes: int) -> dict:
    """Perplexity, argmax and medians of the per-step times of one method's records."""
    lp = np.concatenate([np.asarray(r["logprob"]).ravel() for r in recs])
    steps = sum(len(r["step_s"]) for r in recs)
    probes = [p for r in recs for p in r["probe"]]
    f = {
        "n_texts": len(recs) * recs[0]["batch"], "tokens": int(lp.size), "ppl": float(np.exp(-lp.mean())),
        "argmax": np.concatenate([np.asarray(r["argmax"]).ravel() for r in recs]),
        "lib_ms": 1e3 * float(np.median(np.concatenate([r["lib_s"] for r in recs]))),
        "attn_ms": 1e3 * float(np.median(np.concatenate([r["attn_s"] for r in recs]))),
        "step_ms": 1e3 * float(np.median(np.concatenate([r["step_s"] for r in recs]))),
        "kv_mb": (sum(r["rows_read"] for r in recs) * row_bytes
                  + sum(r["extra_bytes"] for r in recs)) / steps / 1e6,
        "cache_mb": float(np.mean([r["cache_bytes_end"] for r in recs])) / 1e6,
        "timers_ms": {k: 1e3 * sum(r["timers"].get(k, 0.0) for r in recs) / steps
                      for k in ("attn", "summary", "select", "compact")},
    }
    for k in ("torch", "lib"):
        if probes:
            f["probe_" + k] = 1e3 * float(np.median([p[k] for p in probes]))
    return f


def summarize(results: Dict[str, List[dict]], cfg) -> Dict[str, dict]:
    """Per method label: perplexity, ratio to dense, top-1 agreement with dense, medians
    of the library time / attention time / step time per step, KV bytes read per token;
    each against dense on the same texts (``ref_*``: dense's figures over them)."""
    dense = {r["text"]: r for r in results["dense"]}
    row_bytes = cfg.head_dim * 2 * 2  # K and V, f16
    out = {}
    for lab, recs in results.items():
        recs = [r for r in recs if r["text"] in dense]
        if not recs:
            continue
        f = _figures(recs, row_bytes)
        ref = _figures([dense[r["text"]] for r in recs], row_bytes)
        agree = float((f.pop("argmax") == ref["argmax"]).mean())
        s = dict(f, label=lab, method=recs[0]["method"], budget=recs[0]["budget"], batch=recs[0]["batch"],
                 ppl_dense=ref["ppl"], agree=agree, ref_lib_ms=ref["lib_ms"], ref_step_ms=ref["step_ms"])
        if "probe_torch" in ref:
            s["ref_probe_torch"] = ref["probe_torch"]
        s["ppl_ratio"] = s["ppl"] / s["ppl_dense"]
        out[lab] = s
    return out


def fmt_ms(x):
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def write_results(args, model, texts_by_ctx, single, batch, passk, llama, env, over=None):
    cfg = model.cfg
    lines = ["# SmolLM2-135M-Instruct long-context decode through tokenroute", "",
             "Written by `python examples/llm/evaluate.py` (see README.md there). " + env, ""]
    lines += ["Texts (" + corpus.describe_sources() + "), per context the windows of the 1-sequence rows "
              "and of the many-sequence rows:", ""]
    for ctx in sorted(texts_by_ctx):
        one = [r["text"] for r in single.get(ctx, {}).get("dense", [])]
        many = batch.get(ctx, {}).get("dense", {}).get("text")
        lines.append(f"- {ctx + 1} tokens: " + ("; ".join(one) or "-") + (f" | together: {many}" if many else ""))
    lines.append("")
    sums = {ctx: summarize(r, cfg) for ctx, r in single.items() if r}
    lsteps = None
    if llama:
        lsteps = {f: {int(k): v * 1e3 for k, v in d.items()} for f, d in llama["flash"].items()}
    # Headline.
    big = max(sums) if sums else None
    hb = args.batch_budget
    if big:
        S = sums[big]
        q = S.get(f"quest-{hb}")
        B = summarize({k: [v] for k, v in batch[big].items()}, cfg) if batch.get(big) else {}
        if q:
            lines += [f"## Headline: {big} context, {hb}-key budget, Quest", "",
                      "| figure | value | goal |", "|---|---:|---:|"]
            lines.append(f"| perplexity / dense | {q['ppl_ratio']:.4f} | <= 1.01 |")
            lines.append(f"| top-1 agreement with dense | {100 * q['agree']:.1f}% | >= 97% |")
            lines.append(f"| attention speedup vs library dense (in-run, library calls per step) | "
                         f"{q['ref_lib_ms'] / q['lib_ms']:.2f}x | >= 5x |")
            if "ref_probe_torch" in q:
                lines.append(f"| attention speedup vs torch dense SDPA ({fmt_ms(q['ref_probe_torch'])} ms per token, "
                             f"warm) | {q['ref_probe_torch'] / q['lib_ms']:.1f}x | >= 10x |")
            if lsteps:
                for f in ("True", "False"):
                    if big in lsteps[f] and 256 in lsteps[f]:
                        cost = lsteps[f][big] - lsteps[f][256]
                        lines.append(f"| vs llama.cpp attention cost (flash {'on' if f == 'True' else 'off'}: "
                                     f"{cost:.1f} ms) | {cost / q['lib_ms']:.1f}x | >= 5x |")
                        lines.append(f"| library dense attention vs llama.cpp's (flash "
                                     f"{'on' if f == 'True' else 'off'}) | {cost / q['ref_lib_ms']:.2f}x | >= 1x |")
            lines.append(f"| whole step speedup, 1 sequence | {q['ref_step_ms'] / q['step_ms']:.2f}x | >= 1.25x |")
            if B.get(f"quest-{hb}"):
                lines.append(f"| whole step speedup, {B['dense']['batch']} sequences | "
                             f"{B['dense']['step_ms'] / B[f'quest-{hb}']['step_ms']:.2f}x | >= 2.5x |")
            lines.append("")
    # Per context tables.
    for ctx in sorted(sums):
        S = sums[ctx]
        d = S["dense"]
        lines += [f"## {ctx} context, 1 sequence ({d['n_texts']} texts x {args.steps} teacher-forced steps)", "",
                  "| method | ppl | ppl / dense | top-1 agree | library ms/token | attention call ms | "
                  "speedup vs dense | step ms | step speedup | KV MB read/token | cache MB | "
                  "torch ms (probe) | library ms (probe) | vs torch |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for lab in sorted(S, key=lambda x: (x != "dense", S[x]["method"], S[x]["budget"] or 0)):
            s = S[lab]
            pr = [fmt_ms(s[k]) if k in s else "-" for k in ("probe_torch", "probe_lib")]
            pr.append(f"{s['probe_torch'] / s['probe_lib']:.1f}x" if "probe_lib" in s else "-")
            more = f" ({s['n_texts']} of the texts)" if s["n_texts"] != d["n_texts"] else ""
            lines.append(
                f"| {lab}{more} | {s['ppl']:.3f} | {s['ppl_ratio']:.4f} | {100 * s['agree']:.1f}% | {fmt_ms(s['lib_ms'])} | "
                f"{fmt_ms(s['attn_ms'])} | {s['ref_lib_ms'] / s['lib_ms']:.2f}x | {fmt_ms(s['step_ms'])} | "
                f"{s['ref_step_ms'] / s['step_ms']:.2f}x | {s['kv_mb']:.1f} | {s['cache_mb']:.0f} | " + " | ".join(pr) + " |")
        lines.append("")
        lines += ["Library call time per token by kind (ms): attention / summary / select / compact", ""]
        for lab in sorted(S, key=lambda x: (x != "dense", S[x]["method"], S[x]["budget"] or 0)):
            t = S[lab]["timers_ms"]
            lines.append(f"- {lab}: {t['attn']:.3f} / {t['summary']:.3f} / {t['select']:.3f} / {t['compact']:.3f}")
        lines.append("")
    for ctx in sorted(batch):
        if not batch[ctx]:
            continue
        B = summarize({k: [v] for k, v in batch[ctx].items()}, cfg)
        d = B["dense"]
        lines += [f"## {ctx} context, {d['batch']} sequences decoding together", "",
                  "| method | ppl / dense | top-1 agree | library ms/step | step ms | step speedup | "
                  "tokens/s | KV MB read/step | cache MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for lab, s in B.items():
            lines.append(f"| {lab} | {s['ppl_ratio']:.4f} | {100 * s['agree']:.1f}% | {fmt_ms(s['lib_ms'])} | "
                         f"{fmt_ms(s['step_ms'])} | {s['ref_step_ms'] / s['step_ms']:.2f}x | "
                         f"{1e3 * s['batch'] / s['step_ms']:.1f} | {s['kv_mb']:.1f} | {s['cache_mb']:.0f} |")
        lines.append("")
    if lsteps:
        lines += ["## llama.cpp on the same GGUF (llama-cpp-python " + llama["version"] +
                  ", 1 thread, f16 KV cache)", "",
                  "| context | step ms, flash on | attention cost | step ms, flash off | attention cost |",
                  "|---:|---:|---:|---:|---:|"]
        for L in sorted(lsteps["True"]):
            on, off = lsteps["True"][L], lsteps["False"][L]
            lines.append(f"| {L} | {on:.1f} | {on - lsteps['True'][256]:.1f} | {off:.1f} | "
                         f"{off - lsteps['False'][256]:.1f} |")
        lines += ["", "Attention cost = step(context) - step(256).", ""]
    if passk:
        lines += ["## Passkey retrieval (10 depths, a random 5-digit key each)", "",
                  "| method | " + " | ".join(str(c) for c in sorted(passk)) + " |",
                  "|---|" + "---:|" * len(passk)]
        labs = []
        for c in sorted(passk):
            labs += [x for x in passk[c]["answers"] if x not in labs]
        for lab in labs:
            row = []
            for c in sorted(passk):
                a = passk[c]["answers"].get(lab)
                row.append("-" if a is None else
                           f"{sum(passkey_hit(x, k) for x, k in zip(a, passk[c]['keys']))}/{len(a)}")
            lines.append(f"| {lab} | " + " | ".join(row) + " |")
        lines.append("")
        c0 = min(passk)
        lines.append(f"Dense answers at {c0}: " + ", ".join(
            f"{k} -> {a!r}" for k, a in zip(passk[c0]["keys"], passk[c0]["answers"]["dense"])))
        lines.append("")
    if over:
        lines += [f"## The per-layer library calls at {max(args.contexts)} keys, budget {args.batch_budget}, "
                  f"{args.block}-key blocks (overhead.py, synthetic f16 cache)", "", overhead.table(over), ""]
    (HERE / args.out).write_text("\n".join(lines))
    plot(sums, HERE / args.png)
    return sums


def plot(sums, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ctxs = sorted(sums)
    fig, axes = plt.subplots(1, len(ctxs), figsize=(5 * len(ctxs), 4.2), squeeze=False)
    colors = {"sink": "tab:orange", "quest": "tab:blue", "h2o": "tab:green", "dense": "black"}
    for ax, ctx in zip(axes[0], ctxs):
        S = sums[ctx]
        for name in ("sink", "quest", "h2o"):
            pts = sorted((s["budget"], s["ref_lib_ms"] / s["lib_ms"], s["ppl_ratio"])
                         for s in S.values() if s["label"] == f"{name}-{s['budget']}")
            if not pts:
                continue
            ax.plot([p[1] for p in pts], [p[2] for p in pts], "o-", color=colors[name], label=name)
            for b, x, y in pts:
                ax.annotate(str(b), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for s in S.values():  # the Quest variants (block size, dense layers)
            if s["method"] != "dense" and s["label"] != f"{s['method']}-{s['budget']}":
                x, y = s["ref_lib_ms"] / s["lib_ms"], s["ppl_ratio"]
                ax.plot([x], [y], "x", color=colors[s["method"]])
                ax.annotate(s["label"], (x, y), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{ctx} context")
        ax.set_xlabel("attention speedup vs library dense")
        ax.set_ylabel("perplexity / dense")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def environment() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((x.split(":", 1)[1].strip() for x in f if x.startswith("model name")), "?")
    except OSError:
        cpu = "?"
    try:
        import subprocess

        rev = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        rev = "?"
    return (f"CPU {cpu} ({os.cpu_count()} logical), tokenroute {tr.version()} at commit {rev} "
            f"({tr.get_isa()} level), numpy {np.__version__}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}.")


# -- quick mode: the checks -----------------------------------------------------------------------

# The library's dense decode over at least this many keys is split-K: a merge of 512-key
# chunks (README, "Threads"); block lists are one pass. So Quest over every block gives
# dense's bits below it, and both stay within the documented bound from it on.
SPLIT_K_KEYS = 1024


def run_quick(context: int = 1024, steps: int = 16, verbose: bool = True, model=None) -> dict:
    """The checks on one stdlib text (``context + 1`` tokens): (1) the library's dense
    decode attention at every layer and step matches float64 numpy attention of the
    same f16 inputs within the documented bound, and so does Quest with a budget
    covering every block; (2) that Quest gives the same logits and attention outputs as
    dense, bit for bit, at every step whose caches hold fewer than ``SPLIT_K_KEYS`` keys
    (from there dense is split-K); (3) the sparse methods keep their budgets and forced
    keys, H2O's cache shrinks. Returns the figures."""
    model = M.Model() if model is None else model
    text = corpus.windows(model, context + 1, 1)[0]
    base, _ = E.prefill(model, text.ids[: context - steps], context, mass=True)
    worst = {"ratio": 0.0, "checked": 0, "quest_ratio": 0.0, "over_budget": [], "missing_forced": []}
    outs: Dict[str, List[np.ndarray]] = {}
    full = f"quest-{context}"

    def probe(layer, i, q16, s, n, m):
        if m.budget is not None and m.budget < context:  # the budget is kept, every layer
            rows = m.last_keys(layer, s, n)
            if rows is None and m.name == "h2o":
                if n > m.budget + 1 or m.rows_after(s, n) > m.budget:
                    worst["over_budget"].append((m.label(), layer, n))
            elif rows is not None:
                if rows.shape[1] > m.budget:
                    worst["over_budget"].append((m.label(), layer, rows.shape[1]))
                if not ((rows[:, 0] == 0).all() and (rows[:, -1] == n - 1).all()):
                    worst["missing_forced"].append((m.label(), layer))
        if m.name in ("dense", "quest") and m.budget in (None, context):
            out = np.empty(q16.shape, np.float32)
            m.replay(layer, q16, s, n, out)
            exact, bound = E.attention_reference(q16, s.k[layer][:n], s.v[layer][:n])
            ratio = float((np.abs(out - exact) / bound).max())
            key = "ratio" if m.name == "dense" else "quest_ratio"
            worst[key] = max(worst[key], ratio)
            worst["checked"] += m.name == "dense"
            if n < SPLIT_K_KEYS:
                outs.setdefault(m.label(), []).append(out)

    specs = [("dense", None), ("quest", context), ("quest", 256), ("sink", 256), ("h2o", 256)]
    seqs, meths = {}, {}
    for name, b in specs:
        m = E.make_method(model, name, b, context)
        s = base.copy()
        m.prepare(s)
        seqs[m.label()], meths[m.label()] = [s], [m]
    logits = {lab: [] for lab in meths}
    start = context - steps
    for i in range(steps):
        tok = text.ids[start + i: start + i + 1]
        for lab in meths:
            logits[lab].append(E.step(model, seqs[lab], meths[lab], tok, probe=probe)[0])
    recs = {lab: np.stack(v) for lab, v in logits.items()}
    tgt = text.ids[start + 1: start + steps + 1]
    # Step i attends over start + i + 1 keys; the steps before the split-K rule applies.
    one_pass = max(0, min(steps, SPLIT_K_KEYS - 1 - start))
    res = {"text": text.source, "context": context, "steps": steps,
           "dense_bound_ratio": worst["ratio"], "dense_checked": worst["checked"],
           "quest_full_bound_ratio": worst["quest_ratio"], "bitexact_steps": one_pass,
           "quest_full_bitexact": bool(one_pass > 0
                                       and np.array_equal(recs["dense"][:one_pass], recs[full][:one_pass])
                                       and len(outs["dense"]) == len(outs[full])
                                       == one_pass * model.cfg.n_layers
                                       and all(np.array_equal(a, b) for a, b in
                                               zip(outs["dense"], outs[full]))),
           "over_budget": worst["over_budget"], "missing_forced": worst["missing_forced"],
           "h2o_cache_rows": seqs["h2o-256"][0].capacity, "finite": all(np.isfinite(r).all() for r in recs.values()),
           "agree": {}, "ppl_ratio": {}}
    ld = np.array([log_softmax_at(x, int(t)) for x, t in zip(recs["dense"], tgt)])
    for lab, r in recs.items():
        lp = np.array([log_softmax_at(x, int(t)) for x, t in zip(r, tgt)])
        res["agree"][lab] = float((r.argmax(1) == recs["dense"].argmax(1)).mean())
        res["ppl_ratio"][lab] = float(np.exp(ld.mean() - lp.mean()))
    if verbose:
        print(json.dumps(res, indent=1))
    return res


def quick_ok(res: dict) -> bool:
    return (res["dense_bound_ratio"] <= 1.0 and res["quest_full_bound_ratio"] <= 1.0
            and res["quest_full_bitexact"] and not res["over_budget"] and not res["missing_forced"]
            and res["finite"])


# -- main -------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the checks only (test_quick.py); writes nothing")
    ap.add_argument("--contexts", default="2048,4096,8192")
    ap.add_argument("--budgets", default="256,512,1024,2048")
    ap.add_argument("--texts", type=int, default=8, help="texts per context")
    ap.add_argument("--steps", type=int, default=256, help="teacher-forced decode steps per text")
    ap.add_argument("--probes", type=int, default=2, help="steps per text with the torch comparison")
    ap.add_argument("--block", type=int, default=16, help="key block size of sink and quest")
    ap.add_argument("--dense-layers", type=int, default=2, help="first layers Quest keeps dense")
    ap.add_argument("--batch", type=int, default=8, help="sequences decoding together in the batch rows")
    ap.add_argument("--batch-budget", type=int, default=1024, help="budget of the batch rows")
    ap.add_argument("--variants", default="quest:1024:64:2,quest:1024:16:0,quest:1024:64:0",
                    help="more Quest runs, name:budget:block:dense_layers (the block / dense-layer trade-off)")
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--no-passkey", action="store_true")
    ap.add_argument("--no-llamacpp", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="write results.md from what the cache holds for these options; compute nothing")
    ap.add_argument("--llama-contexts", default="256,2048,4096,8192")
    ap.add_argument("--llama-reps", type=int, default=9)
    ap.add_argument("--cache", default=str(HERE / ".cache"), help="where finished results are kept")
    ap.add_argument("--out", default="results.md")
    ap.add_argument("--png", default="results.png")
    args = ap.parse_args(argv)
    if args.quick:
        res = run_quick()
        ok = quick_ok(res)
        print("quick checks:", "passed" if ok else "FAILED")
        return 0 if ok else 1
    args.contexts = [int(x) for x in args.contexts.split(",")]
    args.budgets = [int(x) for x in args.budgets.split(",")]
    args.llama_contexts = [int(x) for x in args.llama_contexts.split(",")]
    args.variants = [(v.split(":")[0],) + tuple(int(x) for x in v.split(":")[1:]) for v in args.variants.split(",") if v]
    cache = pathlib.Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = perf()
    model = M.Model(weights_cache=cache)
    print(f"model loaded in {perf() - t0:.1f} s; {environment()}", flush=True)
    for c in args.contexts:
        model.check_length(c)  # a text of context + 1 tokens: the last is only a target
    for b in args.budgets + [args.batch_budget]:
        E.check_budget("quest", b, max(args.contexts), args.block)
    probe = Probe(model) if args.probes else None
    n_win = max(args.texts, 0 if args.no_batch else args.batch)
    windows = {c: corpus.windows(model, c + 1, n_win) for c in args.contexts}
    texts_by_ctx = {c: w[: args.texts] for c, w in windows.items()}
    single, batch, passk = {}, {}, {}
    llama = None if args.no_llamacpp else run_llamacpp(model, args, cache, texts_by_ctx[max(args.contexts)][0].ids)
    # The longest context first (the headline), each context's 8-sequence rows right after.
    over = overhead.measure(max(args.contexts), args.batch_budget, args.block)
    print(overhead.table(over), flush=True)

    def write():
        write_results(args, model, windows, single, batch, passk, llama, environment(), over)

    for c in sorted(args.contexts, reverse=True):
        single[c] = {}
        run_single(model, args, cache, probe, c, texts_by_ctx[c], single[c], write)
        write()
        if not args.no_batch:
            batch[c] = run_batch(model, args, cache, c, windows[c][: args.batch])
            write()
    if not args.no_passkey:
        for c in sorted(args.contexts):
            r = run_passkey(model, args, cache, c)
            if r is not None:
                passk[c] = r
                write()
    print(f"done in {(perf() - t0) / 60:.1f} min: {HERE / args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
