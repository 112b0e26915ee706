#!/usr/bin/env python3
"""Runs every family's peer comparison (score, select, compact + route, attend), single-
threaded and with all cores, each family in its own process, then the Python package's
per-call cost (overhead: every public function at n = 64 and the large inputs, pinned,
single-threaded), and writes

- results/peers.md   Markdown tables: kernel, shape, dtype, threads, tokenroute's time
                     (the public wrapper, what users run), the raw C call's time beside
                     it, each peer's time, best peer's time / tokenroute's time; then the
                     overhead tables (wrapper - raw and torch's equivalent call at n = 64;
                     wrapper / raw on the large inputs);
- results/peers.json every row (times in seconds, work in bytes or flops);
- results/peers_<family>.png  throughput per kernel and size, tokenroute vs the peers.

Usage (from the repository root, after `cargo build --release`):

    python benches/peers/run.py [--quick] [--families score,attend,overhead]
        [--threads N] [--no-pin] [--out DIR]

--threads N: the "all cores" pass (default: the CPUs this process may run on; a pass
equal to 1 is skipped). Single-threaded passes are pinned to one CPU (the last one
allowed) unless --no-pin. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed from the
environment of the benchmark processes. The peers (requirements.txt) are never a build
or test dependency of the library.
"""
import argparse
import datetime
import importlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
FAMILIES = {"score": "score_peers", "select": "select_peers", "compact": "compact_peers", "attend": "attend",
            "softmax": "softmax_peers", "overhead": "overhead"}
DTYPES = ("f32", "f16", "bf16", "int32", "int64", "uint8")


def worker(family, threads_list, quick, pin, path):
    """Runs one family's module for each thread count, in this process; writes JSON."""
    sys.path.insert(0, str(HERE))
    mod = importlib.import_module(FAMILIES[family])
    allowed = os.sched_getaffinity(0)
    rows = []
    if family == "overhead":  # the cost of one call on the calling thread: one pinned pass
        os.sched_setaffinity(0, {max(allowed)} if pin else allowed)
        start = time.perf_counter()
        rows = [{"family": "overhead", "tables": mod.run(1, quick=quick)}]
        print(f"[overhead] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        os.sched_setaffinity(0, allowed)
        threads_list = []
    for t in threads_list:
        # Only the calling thread is pinned: the single-threaded pass runs everything on it.
        os.sched_setaffinity(0, {max(allowed)} if (t == 1 and pin) else allowed)
        start = time.perf_counter()
        kwargs = {"log": lambda s: print(f"  {s}", file=sys.stderr, flush=True)} if family == "attend" else {}
        got = mod.run(t, quick=quick, **kwargs)
        print(f"[{family}] threads={t}: {len(got)} rows in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
        rows += [r.to_dict() for r in got]
    os.sched_setaffinity(0, allowed)
    with open(path, "w") as f:
        json.dump(rows, f)


def split_dtype(workload):
    """('gather', 'bf16') from 'gather bf16'; the dtype token leaves the kernel name."""
    words = workload.split(" ")
    for i, w in enumerate(words):
        if w in DTYPES:
            return " ".join(words[:i] + words[i + 1:]), w
    return workload, "-"


def fmt_t(t):
    if t is None:
        return "-"
    return f"{t * 1e3:.3f} ms" if t >= 1e-3 else f"{t * 1e6:.1f} us"


def best_peer(r):
    times = [(t, n) for n, t in r["peers"].items() if t is not None]
    return min(times) if times else (None, None)


def overhead_markdown(tables):
    """The overhead section: per-call cost of the wrappers over the raw calls."""
    import overhead
    return ["## Python package: per-call cost\n",
            "CPU time of the calling thread per call, medians of interleaved batches (one pinned core). "
            "**raw C call**: the function `tokenroute.lib()` declares, called with its arguments converted once "
            "and preallocated outputs; **wrapper**: the public function as users call it (outputs allocated); "
            "**wrapper, out=**: with its outputs (and workspace) given; **torch**: torch's equivalent call on the "
            "same data (one thread).\n",
            "### Small inputs (n = 64, one row)\n", overhead.small_table(tables["small"]) + "\n",
            "### Large inputs\n", overhead.large_table(tables["large"]) + "\n"]


def markdown(rows, meta):
    out = [f"# tokenroute vs peers\n",
           f"{meta['date']}; {meta['cpu']}; {meta['cores']} CPUs (load average at the end "
           f"{meta.get('load', '?')}); tokenroute level {meta['isa']}; "
           f"torch {meta['torch']}, onnxruntime {meta['onnxruntime']}, numpy {meta['numpy']}; "
           f"{'quick' if meta['quick'] else 'full'} run (`{meta['command']}`).\n",
           "Times are medians (all the implementations of a case timed interleaved). The **tokenroute** "
           "column times the package's public wrapper (what users run); **raw C call** is the same work "
           "through the ctypes function the package declares, arguments converted once (wrapper time / raw "
           "time in brackets). **vs best peer** = best peer's time / tokenroute's time (above 1: tokenroute "
           "is faster). Throughput in the tokenroute column: bytes read or moved once per second (GB/s), "
           "or GFLOP/s for prefill attention. Single-threaded rows pin one CPU and use the process's CPU "
           "time (time waiting for a core on a shared machine is not part of a call's cost); with more "
           "threads (wall time) the peers use their own thread pools and tokenroute "
           + ("splits the rows (or KV heads) across Python threads, one wrapper call each "
              "(TOKENROUTE_PEERS_SPLIT=python).\n" if os.environ.get("TOKENROUTE_PEERS_SPLIT") == "python"
              else "makes one call on its own pool of as many threads (tokenroute.set_num_threads).\n")]
    for family in FAMILIES:
        fr = [r for r in rows if r["family"] == family]
        if not fr:
            continue
        if family == "overhead":
            out += overhead_markdown(fr[0]["tables"])
            continue
        out.append(f"## {family}\n")
        # One table per set of peers (columns), in order of first appearance.
        groups = {}
        for r in fr:
            groups.setdefault(tuple(r["peers"]), []).append(r)
        for peers, rs in groups.items():
            head = ["kernel", "shape", "dtype", "threads", "tokenroute", "raw C call", *peers, "vs best peer"]
            lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|"]
            notes = []
            for r in sorted(rs, key=lambda r: r["threads"]):
                kernel, dt = split_dtype(r["workload"])
                rate = r["work"] / r["ours"] / 1e9
                best, name = best_peer(r)
                ratio = f"**{best / r['ours']:.2f}x** ({name})" if best else "-"
                raw = r.get("raw")
                raw_cell = f"{fmt_t(raw)} (wrapper {r['ours'] / raw:.2f}x)" if raw else "-"
                lines.append("| " + " | ".join([kernel, r["size"], dt, str(r["threads"]),
                                                 f"{fmt_t(r['ours'])} ({rate:.1f} {r['unit']})", raw_cell,
                                                 *[fmt_t(r["peers"][p]) for p in peers], ratio]) + " |")
                if r.get("note"):
                    notes.append(f"- {kernel} {dt} {r['size']}, {r['threads']} thread(s): {r['note']}")
            out.append("\n".join(lines) + "\n")
            if notes:
                out.append("\n".join(notes) + "\n")
    return "\n".join(out)


def charts(rows, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for family in FAMILIES:
        fr = [r for r in rows if r["family"] == family and family != "overhead"]
        if not fr:
            continue
        panels = sorted({(r["threads"], r["unit"]) for r in fr})
        names = ["tokenroute"] + list(dict.fromkeys(p for r in fr for p in r["peers"]))
        colors = {n: ("black" if i == 0 else plt.cm.tab20((i - 1) % 20)) for i, n in enumerate(names)}
        heights = [len([r for r in fr if (r["threads"], r["unit"]) == p]) for p in panels]
        fig, axes = plt.subplots(len(panels), 1, figsize=(13, 1.2 + 0.55 * sum(heights) + 0.9 * len(panels)),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        for ax, (threads, unit) in zip(axes[:, 0], panels):
            rs = [r for r in fr if (r["threads"], r["unit"]) == (threads, unit)]
            labels = []
            for i, r in enumerate(rs):
                impl = [("tokenroute", r["ours"])] + [(n, t) for n, t in r["peers"].items() if t]
                w = 0.8 / len(impl)
                for j, (n, t) in enumerate(impl):
                    ax.barh(i - 0.4 + w * (j + 0.5), r["work"] / t / 1e9, height=w, color=colors[n],
                            label=n)
                labels.append(f"{r['workload']}\n{r['size']}")
            ax.set_yticks(range(len(rs)))
            ax.set_yticklabels(labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.set_xlabel(f"{unit} (higher is better)")
            ax.set_title(f"{family}: {threads} thread{'s' if threads > 1 else ''}", fontsize=10)
            ax.grid(axis="x", which="both", alpha=0.3)
            handles, lbls = ax.get_legend_handles_labels()
            uniq = dict(zip(lbls, handles))
            ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = outdir / f"peers_{family}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (smaller shapes, fewer rounds)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ",".join(FAMILIES))
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="the all-cores pass")
    ap.add_argument("--no-pin", action="store_true", help="do not pin single-threaded passes to one CPU")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-threads", help=argparse.SUPPRESS)
    ap.add_argument("--worker-json", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, [int(x) for x in a.worker_threads.split(",")], a.quick, not a.no_pin, a.worker_json)
        return

    families = [f for f in a.families.split(",") if f]
    for f in families:
        if f not in FAMILIES:
            ap.error(f"unknown family {f!r}")
    threads_list = [1] + ([a.threads] if a.threads > 1 else [])
    outdir = pathlib.Path(a.out)
    outdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(v, None)
    rows = []
    for f in families:
        tmp = outdir / f".{f}.json"
        cmd = [sys.executable, str(HERE / "run.py"), "--worker", f, "--worker-threads",
               ",".join(map(str, threads_list)), "--worker-json", str(tmp)]
        cmd += ["--quick"] if a.quick else []
        cmd += ["--no-pin"] if a.no_pin else []
        print(f"[{f}] {'quick' if a.quick else 'full'}, threads {threads_list}", file=sys.stderr, flush=True)
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            print(f"[{f}] FAILED (exit {rc})", file=sys.stderr)
            sys.exit(rc)
        rows += json.loads(tmp.read_text())
        tmp.unlink()

    import numpy
    import onnxruntime
    import torch
    sys.path.insert(0, str(HERE))
    from common import load_package
    tr = load_package()
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    meta = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": len(os.sched_getaffinity(0)),
            "load": " / ".join(f"{x:.1f}" for x in os.getloadavg()),
            "isa": tr.get_isa(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__, "quick": a.quick,
            "command": "python benches/peers/run.py " + " ".join(sys.argv[1:]), "threads": threads_list}
    (outdir / "peers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    md = markdown(rows, meta)
    (outdir / "peers.md").write_text(md)
    pngs = charts(rows, outdir)
    print(md)
    print(f"wrote {outdir / 'peers.md'}, {outdir / 'peers.json'}, " + ", ".join(str(p) for p in pngs))


if __name__ == "__main__":
    main()
