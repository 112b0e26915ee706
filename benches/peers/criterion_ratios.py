#!/usr/bin/env python3
"""Prints the medians of a criterion run as a table: time, throughput and the ratio to
the group's ceilings (ceiling_memcpy, ceiling_stream_copy) and to its scalar entry.

Usage: python3 benches/peers/criterion_ratios.py [GROUP_PREFIX ...]
(reads target/criterion/<group>/<bench>/new/{estimates,benchmark}.json)."""
import json
import os
import sys

root = os.path.join(os.path.dirname(__file__), "..", "..", "target", "criterion")
prefixes = sys.argv[1:] or [""]
rows = {}
for dirpath, _, files in os.walk(root):
    if "estimates.json" not in files or not dirpath.endswith("new"):
        continue
    with open(os.path.join(dirpath, "benchmark.json")) as f:
        meta = json.load(f)
    group = meta["group_id"]
    if not any(group.startswith(p) for p in prefixes):
        continue
    with open(os.path.join(dirpath, "estimates.json")) as f:
        est = json.load(f)
    t = est["median"]["point_estimate"] * 1e-9
    tp = meta.get("throughput") or {}
    nbytes = tp.get("Bytes") or tp.get("BytesDecimal")
    name = meta.get("function_id") or meta.get("value_str")
    rows.setdefault(group, {})[name] = (t, nbytes)

for group in sorted(rows):
    r = rows[group]
    ceil = {k: nb / t for k, (t, nb) in r.items() if k.startswith("ceiling") and nb}
    scalar = r.get("scalar")
    print(f"\n{group}")
    print(f"  {'bench':28} {'median':>11} {'GB/s':>8} {'/memcpy':>8} {'/stream':>8} {'/scalar':>8}")
    for name in sorted(r, key=lambda k: (not k.startswith("ceiling"), k)):
        t, nb = r[name]
        gbs = nb / t / 1e9 if nb else float("nan")
        def ratio(c):
            return f"{nb / t / c:8.2f}" if c and nb else "       -"
        sc = f"{scalar[0] / t:8.2f}" if scalar and not name.startswith("ceiling") else "       -"
        print(f"  {name:28} {t * 1e3:9.3f}ms {gbs:8.2f} {ratio(ceil.get('ceiling_memcpy'))} "
              f"{ratio(ceil.get('ceiling_stream_copy'))} {sc}")
