#!/usr/bin/env python3
"""Summary of store-run.sh: per round and store, logins/s at saturation,
refresh and introspection throughput and p99, the ratios to the memory store
of the same round, and the log's syncs per refresh.
usage: store-report.py runs/LABEL"""
import json, os, re, sys

d = sys.argv[1]
rounds = sorted({int(m.group(1)) for f in os.listdir(d) if (m := re.match(r"mem-pw-(\d+)\.json$", f))})


def run(name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    j = json.load(open(p))
    return j["success_rps"], j["latency_us"]["p99"] / 1000, j["errors"]


def metric(name, series):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    for line in open(p):
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


print("| round | store | logins/s | ÷ mem | refresh/s | ÷ mem | refresh p99 ms | introspect/s | ÷ mem | introspect p99 ms | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rounds:
    base = {k: run(f"mem-{k}-{r}") for k in ("pw", "refresh", "introspect")}
    for s in ("mem", "wal", "walsync", "redis"):
        x = {k: run(f"{s}-{k}-{r}") for k in ("pw", "refresh", "introspect")}
        if not all(x.values()):
            continue
        errs = sum(v[2] for v in x.values())
        ratio = lambda k: x[k][0] / base[k][0] if base[k] else float("nan")
        print(f"| {r} | {s} | {x['pw'][0]:.1f} | {ratio('pw'):.3f} | {x['refresh'][0]:.0f} | {ratio('refresh'):.3f} | "
              f"{x['refresh'][1]:.2f} | {x['introspect'][0]:.0f} | {ratio('introspect'):.3f} | {x['introspect'][1]:.2f} | {errs} |")
for r in rounds:
    for s in ("wal", "walsync"):
        syncs = metric(f"metrics-{s}-{r}.txt", "ropc_token_log_syncs_total")
        entries = metric(f"metrics-{s}-{r}.txt", "ropc_token_log_entries_total")
        if syncs:
            print(f"round {r}: {s}: token log {entries:.0f} entries in {syncs:.0f} syncs ({entries / syncs:.1f} per sync)")
    trips = metric(f"metrics-redis-{r}.txt", "ropc_token_store_round_trips_total")
    if trips:
        print(f"round {r}: redis round trips {trips:.0f}")
