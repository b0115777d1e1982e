#!/bin/bash
# usage: attack-run.sh LABEL AB|BA|ABA|AL
#   One fresh `ropc serve --config lt/ropc.toml` for all phases. A = baseline
#   (valid logins alone; the second A of ABA goes to baseline2.json, so that
#   the attack is compared with the mean of a baseline before and after it,
#   which cancels a steady drift of the machine's speed),
#   B = valid logins and the attacker starting together (the same --start-at),
#   L = valid logins for 25 s with the attacker joining 5 s in. Results go to
#   runs/LABEL/ under $BENCH_DIR (default /tmp/bench), which holds `ropc` and
#   `ropc-loadtest` (copied from target/release) and the fixture lt/ written by
#   `ropc-loadtest fixture --dir lt --users 200 --listen 127.0.0.1:18443`.
#   Summaries: attack-cpu.py runs/LABEL, attack-metrics.py LABEL...,
#   attack-ratio.py LABEL... (run in $BENCH_DIR).
#   CONTROL=client-credentials: the "attacker" sends client_credentials
#   grants instead (same rate, connections and address; no lock to wait
#   for): what the same number of the cheapest requests costs the valid
#   logins, to compare locked attempts with.
#   ATTACK_IPS=N: the attacker's 512 connections come from N addresses,
#   127.0.0.2 on (--bind-count; default 1). With 512, each address sends
#   about 2 guesses a second and no address reaches ip_max_failures (100)
#   within the 20 s: an attack from many machines, answered as locked to
#   the end, where one address is soon throttled (429).
set -u
export LC_ALL=C   # decimal points for awk and bc
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ORDER=$2; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
M=http://127.0.0.1:18443/metrics
scrape() { curl -s $M | grep -E '^ropc_(requests_total\{endpoint="token"|hash_completed_total|hash_skipped_total|hash_shed_total|lockout_(locks|refused)_total|lockout_tracked_ips)' ; }
cpu() { # per-thread CPU ticks of the server, then the machine's /proc/stat cpu line
  for t in /proc/$SP/task/*; do echo "$(cat $t/comm | tr ' ' _) $(awk '{print $14+$15}' $t/stat)"; done > $1
  grep '^cpu ' /proc/stat >> $1; }
val() { grep -F "$1" "$2" | awk '{print $2}'; }
start_at() { # a wall-clock time $1 s from now, for --start-at
  date +%s.%N | awk -v d="$1" '{printf "%.3f", $1 + d}'; }
sleep_until() { # the wall-clock time $1
  sleep "$(date +%s.%N | awk -v t="$1" '{d = t - $1; printf "%.3f", (d > 0 ? d : 0)}')"; }
start_attacker() { # wrong passwords for user0 from 127.0.0.2 (on) at 1000/s from --start-at $1
  # (pid in AP); CPU snapshot and scrape ("before") at $1; scrapes as soon as
  # ropc_lockout_locks_total rises ("lock") and 3 s later ("locked").
  # The attacker's own latency is not measured, and its CPU comes off the
  # server's two cores (a real attacker's would not): one runtime thread and
  # the runtime's timer (--pacer runtime) keep its wake-ups, and so its
  # share, small.
  if [ -n "${CONTROL:-}" ]; then what="--scenario $CONTROL"; else what="--users 1 --user-offset 0 --password-prefix wrong-"; fi
  ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --bind 127.0.0.2 --bind-count "${ATTACK_IPS:-1}" \
    --threads 1 --pacer runtime --start-at $1 \
    $what --rate 1000 --connections 512 --duration 20 \
    --quiet --json $D/attacker.json > $D/attacker.txt &
  AP=$!
  sleep_until $1
  cpu $D/cpu-attack-start.txt
  scrape > $D/scrape-before.txt; date -u +%T.%N >> $D/scrape-before.txt
  locks0=$(val ropc_lockout_locks_total $D/scrape-before.txt)
  while [ -z "${CONTROL:-}" ]; do
    scrape > $D/poll.txt
    if [ "$(val ropc_lockout_locks_total $D/poll.txt)" != "$locks0" ]; then break; fi
    sleep 0.05
  done
  [ -n "${CONTROL:-}" ] && scrape > $D/poll.txt
  T1=$(date +%s.%N)
  cp $D/poll.txt $D/scrape-lock.txt; date -u +%T.%N >> $D/scrape-lock.txt
  sleep 3
  scrape > $D/scrape-locked.txt; date -u +%T.%N >> $D/scrape-locked.txt
  echo "lock seen $(echo "$T1 - $1" | bc) s after the attack's start; locked scrape 3 s later" >> $D/times
}
baseline() { # $1: output name (default baseline)
  local B=${1:-baseline}
  idle_wait
  echo "$B start $(date -u +%T) $(uptime)" >> $D/times
  cpu $D/cpu-$B-start.txt
  ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 199 --user-offset 1 \
    --connections 16 --duration 20 --quiet --json $D/$B.json > $D/$B.txt
  cpu $D/cpu-$B-end.txt
}
attack() { # both loaders measure from the same --start-at, 3 s ahead, whatever
  # their setups take (the attacker's 512 connections can take a second or two)
  idle_wait
  echo "attack start $(date -u +%T) $(uptime)" >> $D/times
  T=$(start_at 3)
  ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 199 --user-offset 1 \
    --start-at $T --connections 16 --duration 20 --quiet --json $D/valid.json > $D/valid.txt &
  VP=$!
  start_attacker $T
  wait $VP $AP
  grep -h "after --start-at" $D/valid.txt $D/attacker.txt >> $D/times   # a late start, if any
  scrape > $D/scrape-end.txt; date -u +%T.%N >> $D/scrape-end.txt
  cpu $D/cpu-attack-end.txt
  echo "attack end $(date -u +%T) $(uptime)" >> $D/times
}
attack_late() { # the valid load runs 25 s; the attacker joins 5 s in, for 20 s
  idle_wait
  echo "late attack start $(date -u +%T) $(uptime)" >> $D/times
  T=$(start_at 3)
  ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 199 --user-offset 1 \
    --start-at $T --connections 16 --duration 25 --quiet --json $D/valid.json > $D/valid.txt &
  VP=$!
  TA=$(echo "$T + 5" | bc)
  sleep_until $(echo "$TA - 3" | bc)
  echo "attacker start $TA" >> $D/times
  start_attacker $TA
  wait $AP
  scrape > $D/scrape-end.txt; date -u +%T.%N >> $D/scrape-end.txt
  cpu $D/cpu-attack-end.txt
  wait $VP
  grep -h "after --start-at" $D/valid.txt $D/attacker.txt >> $D/times   # a late start, if any
  echo "attack end $(date -u +%T) $(uptime)" >> $D/times
}
fresh_store lt; ./ropc serve --config lt/ropc.toml > $D/server.log 2>&1 &
SP=$!
until curl -s -o /dev/null $M; do sleep 0.1; done
case $ORDER in
  AB) baseline; attack;;
  BA) attack; baseline;;
  ABA) baseline; attack; baseline baseline2;;
  AL) baseline; attack_late;;
esac
kill $SP; wait $SP
