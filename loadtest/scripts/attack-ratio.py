#!/usr/bin/env python3
"""Valid logins under attack ÷ alone, for attack-run.sh runs: over the whole
20 s, and over seconds 2-19 of the per-second timelines (without the first
two seconds, in which the attacker's first guesses are hashed and the lock
comes). With an ABA run, "alone" is the mean of the baselines before and
after the attack. For AB, BA and ABA runs (not AL, whose valid load runs
25 s with the attacker joining at 5 s).
usage: python3 attack-ratio.py LABEL... (in $BENCH_DIR)"""
import json, os, statistics, sys


def load(run, name):
    path = f"runs/{run}/{name}.json"
    return json.load(open(path)) if os.path.exists(path) else None


def steady(report):
    per_second = [x["successes"] for x in report["timeline"]][2:20]
    return sum(per_second) / len(per_second)


whole, tail = [], []
for run in sys.argv[1:]:
    alone = [r for r in (load(run, "baseline"), load(run, "baseline2")) if r]
    valid = load(run, "valid")
    a_rate = statistics.mean(r["success_rps"] for r in alone)
    a_steady = statistics.mean(steady(r) for r in alone)
    w, s = valid["success_rps"] / a_rate, steady(valid) / a_steady
    whole.append(w)
    tail.append(s)
    rates = " and ".join(f"{r['success_rps']:.1f}" for r in alone)
    print(f"{run}: alone {rates}/s, under attack {valid['success_rps']:.1f}/s, ratio {w:.3f}; "
          f"seconds 2-19 ratio {s:.3f}; first two seconds under attack "
          f"{[x['successes'] for x in valid['timeline']][:2]}")
if len(whole) > 1:
    sd = statistics.stdev(whole)
    print(f"{len(whole)} runs: ratio mean {statistics.mean(whole):.3f} (sd {sd:.3f}, "
          f"{min(whole):.3f}-{max(whole):.3f}; {sum(w >= 0.9 for w in whole)} at or above 0.9); "
          f"seconds 2-19 mean {statistics.mean(tail):.3f}")
