#!/usr/bin/env python3
"""usage: manager-report.py runs/LABEL -- the table of a manager-run.sh run:
per round, logins/s at saturation, the idle login latency (p50, p99) and
refresh grants/s with the users file and with PostgreSQL, the means and the
ratios pg / file, and the statements the database got per login and refresh."""
import glob, json, os, statistics, sys

d = sys.argv[1]
def load(name):
    p = os.path.join(d, name + ".json")
    return json.load(open(p)) if os.path.exists(p) else None
rounds = sorted({int(f.rsplit("-", 1)[1].split(".")[0]) for f in glob.glob(os.path.join(d, "file-sat-*.json"))})
print(open(os.path.join(d, "machine")).read().strip().replace("\n", "; "))
print("| round | file logins/s | pg logins/s | file p50/p99 ms | pg p50/p99 ms | file refresh/s | pg refresh/s |")
print("|---|---|---|---|---|---|---|")
cols = {k: [] for k in ["file-sat", "pg-sat", "file-p50", "pg-p50", "file-p99", "pg-p99", "file-refresh", "pg-refresh"]}
for r in rounds:
    row = []
    for x in ["file", "pg"]:
        cols[f"{x}-sat"].append(load(f"{x}-sat-{r}")["success_rps"])
        lat = load(f"{x}-lat-{r}")["latency_us"]
        cols[f"{x}-p50"].append(lat["p50"] / 1000)
        cols[f"{x}-p99"].append(lat["p99"] / 1000)
        cols[f"{x}-refresh"].append(load(f"{x}-refresh-{r}")["success_rps"])
    print(f"| {r} | {cols['file-sat'][-1]:.1f} | {cols['pg-sat'][-1]:.1f} | {cols['file-p50'][-1]:.2f}/{cols['file-p99'][-1]:.2f} "
          f"| {cols['pg-p50'][-1]:.2f}/{cols['pg-p99'][-1]:.2f} | {cols['file-refresh'][-1]:,.0f} | {cols['pg-refresh'][-1]:,.0f} |")
m = {k: statistics.mean(v) for k, v in cols.items()}
for k, v in m.items():
    print(f"mean {k}: {v:,.3f}")
print(f"pg / file logins at saturation: {m['pg-sat'] / m['file-sat']:.3f}")
print(f"added login latency (pg - file): p50 {m['pg-p50'] - m['file-p50']:.3f} ms, p99 {m['pg-p99'] - m['file-p99']:.3f} ms")
print(f"pg / file refresh: {m['pg-refresh'] / m['file-refresh']:.3f}")
lk = {k: [] for k in ["file-p50", "pg-p50", "file-p99", "pg-p99"]}
for r in rounds:
    for x in ["file", "pg"]:
        j = load(f"{x}-lookup-{r}")
        if j:
            lk[f"{x}-p50"].append(j["latency_us"]["p50"] / 1000)
            lk[f"{x}-p99"].append(j["latency_us"]["p99"] / 1000)
if all(lk.values()):
    for r, vals in enumerate(zip(*lk.values()), 1):
        print(f"lookup round {r}: file p50/p99 {vals[0]:.3f}/{vals[2]:.3f} ms, pg (ttl 0) {vals[1]:.3f}/{vals[3]:.3f} ms")
    mm = {k: statistics.mean(v) for k, v in lk.items()}
    print(f"the look-up on a refresh (pg ttl 0 - file): p50 {mm['pg-p50'] - mm['file-p50']:.3f} ms, p99 {mm['pg-p99'] - mm['file-p99']:.3f} ms")
if os.path.exists(os.path.join(d, "trips")):
    print(open(os.path.join(d, "trips")).read().strip())
