#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench --bench attend` run (target/criterion) with
their throughput, one line per benchmark: `python3 benches/peers/criterion_table.py`."""
import glob
import json
import os

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "criterion", "attend")
for est in sorted(glob.glob(os.path.join(root, "*", "new", "estimates.json"))):
    bm = json.load(open(est.replace("estimates.json", "benchmark.json")))
    med = json.load(open(est))["median"]["point_estimate"]  # ns
    thr = bm.get("throughput") or {}
    rate = ""
    if "Bytes" in thr:
        rate = f"{thr['Bytes'] / med:8.2f} GB/s"
    elif "Elements" in thr:
        rate = f"{thr['Elements'] / med:8.2f} GFLOP/s"
    print(f"{bm['value_str'] if 'value_str' in bm and bm['value_str'] else bm['function_id']:50s} {med / 1e6:10.3f} ms {rate}")
