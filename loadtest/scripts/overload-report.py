#!/usr/bin/env python3
"""Summary of one overload-run.sh run: python3 overload-report.py runs/LABEL"""
import json, os, sys

d = sys.argv[1]
load = lambda n: json.load(open(f"{d}/{n}.json"))

def metrics(name):
    out = {}
    for line in open(f"{d}/{name}.txt"):
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("ropc_"):
            out[parts[0]] = float(parts[1])
        elif parts and parts[0] == "cpu":   # /proc/stat: user nice system idle iowait irq softirq steal
            out["cpu"] = [int(x) for x in parts[1:]]
    return out

def steal(start, end):
    """The share of the vCPUs' time the host took between two parsed scrapes."""
    a, b = start.get("cpu"), end.get("cpu")
    if not a or not b:
        return ""
    total = sum(b[:8]) - sum(a[:8])
    return f"; steal {100 * (b[7] - a[7]) / total:.1f} %" if total else ""

a, b = metrics("scrape-sat-start"), metrics("scrape-sat-end")
sat = load("sat")
hashes = b["ropc_hash_duration_seconds_count"] - a["ropc_hash_duration_seconds_count"]
hash_mean = (b["ropc_hash_duration_seconds_sum"] - a["ropc_hash_duration_seconds_sum"]) / hashes
workers = b["ropc_hash_workers"]
ideal = workers / hash_mean
print(f"saturation: {sat['success_rps']:.1f} logins/s; {hashes:.0f} hashes, mean {hash_mean*1000:.2f} ms in the run; "
      f"{workers:.0f} workers / mean = {ideal:.1f}/s; ratio {sat['success_rps']/ideal:.3f}")
# Runs since sat2 was added measure saturation again at the end; the
# accepted rates are compared with the mean of both.
saturation = sat["success_rps"]
if os.path.exists(f"{d}/sat2.json"):
    sat2 = load("sat2")
    saturation = (sat["success_rps"] + sat2["success_rps"]) / 2
    print(f"saturation again at the end: {sat2['success_rps']:.1f} logins/s; mean of both {saturation:.1f}/s")

idle, refresh = load("idle"), load("refresh")
ms = lambda us: us / 1000
lag = lambda r: (f"; send lag p50 {ms(r['send_lag_us']['p50']):.3f} p99 {ms(r['send_lag_us']['p99']):.3f} ms"
                 if r.get("send_lag_us") else "")
print(f"refresh idle: {idle['throughput_rps']:.1f}/s, errors {idle['errors']}, "
      f"p50 {ms(idle['latency_us']['p50']):.3f} p99 {ms(idle['latency_us']['p99']):.3f} ms{lag(idle)}")
# The worst per-second p99 of the refresh run, and the whole run's. Runs
# made before overload-run.sh used --start-at began the refresh load 1.5 s
# before the overload: only their seconds 2.. lie inside it.
tl = refresh["timeline"]
first = 0 if refresh["load"].get("start_at") else 2
inside = tl[first:len(tl) - 1]
worst = max(s["latency_us"]["p99"] for s in inside)
print(f"refresh under overload: {refresh['throughput_rps']:.1f}/s, errors {refresh['errors']}, "
      f"p50 {ms(refresh['latency_us']['p50']):.3f} p99 {ms(refresh['latency_us']['p99']):.3f} ms; "
      f"worst per-second p99 in seconds {first}..{len(tl)-2}: {ms(worst):.3f} ms; "
      f"ratio p99 {refresh['latency_us']['p99']/idle['latency_us']['p99']:.2f}, worst second {worst/idle['latency_us']['p99']:.2f}"
      f"{lag(refresh)}")
def overload(name, label):
    o = load(name)
    tl = o["timeline"]
    steady = tl[1:len(tl) - 1]
    acc = sum(s["successes"] for s in steady) / len(steady)
    print(f"{label}: offered {o['load']['rate']}/s over {o['load']['connections']} connections; "
          f"{o['throughput_rps']:.1f} answers/s; by status {o['errors_by_status']}; unsent {o['unsent']}; "
          f"accepted {o['success_rps']:.1f}/s overall, {acc:.1f}/s in seconds 1..{len(tl)-2}; "
          f"ratio to saturation {acc/saturation:.3f}")
    for k, l in o["latency_by_outcome_us"].items():
        print(f"  {k}: {l['count']} answers, p50 {ms(l['p50']):.3f} p99 {ms(l['p99']):.3f} "
              f"p99.9 {ms(l['p99_9']):.3f} max {ms(l['max']):.3f} ms")
    lag = o.get("send_lag_us")
    if lag:
        print(f"  send lag (in the latencies): p50 {ms(lag['p50']):.3f} p99 {ms(lag['p99']):.3f} "
              f"p99.9 {ms(lag['p99_9']):.3f} max {ms(lag['max']):.3f} ms")

overload("alone", "overload alone")
overload("overload", "overload with refresh")
for phase in ("alone", "over"):
    c, e = metrics(f"scrape-{phase}-start"), metrics(f"scrape-{phase}-end")
    slow = ""
    writes = "ropc_token_log_write_seconds_count"
    if writes in e:
        n = e[writes] - c[writes]
        fast = lambda m: m.get('ropc_token_log_write_seconds_bucket{le="0.25"}', 0)
        slow = f"; token log writes {n:.0f}, of them {n - (fast(e) - fast(c)):.0f} took 0.25 s or more"
    wait = "ropc_hash_shed_wait_total"
    for_wait = f" ({e[wait] - c[wait]:.0f} for the wait)" if wait in e and wait in c else ""
    hashes = e['ropc_hash_completed_total'] - c['ropc_hash_completed_total']
    mean = ((e['ropc_hash_duration_seconds_sum'] - c['ropc_hash_duration_seconds_sum'])
            / max(e['ropc_hash_duration_seconds_count'] - c['ropc_hash_duration_seconds_count'], 1))
    print(f"{phase}: hashes {hashes:.0f}, mean {mean * 1000:.2f} ms, "
          f"shed {e['ropc_hash_shed_total']-c['ropc_hash_shed_total']:.0f}{for_wait}{slow}"
          f"{steal(c, e)}")
waited = sum(1 for line in open(f"{d}/server.log") if "grants waited long for the token log" in line)
print(f"server log: {waited} warnings of grants that waited long for the token log (50 ms or more since b8a2bfa, 250 ms before)")
