#!/usr/bin/env python3
"""usage: ab-report.py runs/LABEL -- the table of an ab-run.sh run: per round,
bare hyper, and A's and B's refresh, client-credentials and saturation, with
the ratios to bare hyper (cheap paths) and B / A."""
import glob, json, os, statistics, sys

d = sys.argv[1]
def rps(name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    j = json.load(open(p))
    return j["success_rps"], j["latency_us"]["p99"] / 1000.0
rounds = sorted({int(f.rsplit("-", 1)[1].split(".")[0]) for f in glob.glob(os.path.join(d, "bare-*.json"))})
print(open(os.path.join(d, "machine")).read().strip().replace("\n", "; "))
print("| round | bare | A refresh | B refresh | A cc | B cc | A logins/s | B logins/s |")
print("|---|---|---|---|---|---|---|---|")
cols = {k: [] for k in ["bare", "A-refresh", "B-refresh", "A-cc", "B-cc", "A-sat", "B-sat"]}
for r in rounds:
    row = []
    for k in cols:
        v = rps(f"{k}-{r}")
        cols[k].append(v[0] if v else None)
        row.append(f"{v[0]:,.0f}" if v else "-")
    print(f"| {r} | " + " | ".join(row) + " |")
mean = lambda k: statistics.mean(x for x in cols[k] if x)
for k in cols:
    print(f"mean {k}: {mean(k):,.1f}")
for x in ["A", "B"]:
    print(f"{x}: refresh / bare {mean(x + '-refresh') / mean('bare'):.3f}; cc / bare {mean(x + '-cc') / mean('bare'):.3f}")
for k in ["refresh", "cc", "sat"]:
    print(f"B / A {k}: {mean('B-' + k) / mean('A-' + k):.3f}")
