#!/usr/bin/env python3
"""Summary of compact-run.sh: python3 compact-report.py runs/LABEL"""
import json, os, re, sys
d = sys.argv[1]
for f in sorted(x[:-5] for x in os.listdir(d) if x.endswith('.json')):
    j = json.load(open(f"{d}/{f}.json")); l = j['latency_us']
    m = {}
    for line in open(f"{d}/metrics-{f}.txt"):
        k, v = line.split(); m[k] = float(v)
    le = lambda b: m.get('ropc_token_log_write_seconds_bucket{le="%s"}' % b, 0)
    n = m['ropc_token_log_write_seconds_count']
    held = [int(x) for x in re.findall(r"appends_held_us=(\d+)", open(f"{d}/server-{f}.log").read())]
    print(f"{f}: {j['throughput_rps']:.0f}/s, errors {j['errors']}; p50 {l['p50']/1000:.2f} p99 {l['p99']/1000:.2f} "
          f"p99.9 {l['p99_9']/1000:.2f} max {l['max']/1000:.1f} ms; compactions {m['ropc_token_log_compactions_total']:.0f}; "
          f"writes {n:.0f}: >5 ms {n-le('0.005'):.0f}, >10 ms {n-le('0.01'):.0f}, >20 ms {n-le('0.02'):.0f}"
          + (f"; appends held {', '.join(f'{h/1000:.2f}' for h in held)} ms" if held else ""))
