#!/bin/bash
# usage: overload-run.sh LABEL CONFIGDIR OVERLOAD_RATE [REFRESH_RATE]
#   One fresh `ropc serve --config CONFIGDIR/ropc.toml` (not pinned: its hash
#   workers use both cores), then four phases, each after both cores were
#   >= 90 % idle for 3 s:
#     sat      password logins, closed loop, 16 connections, 20 s (saturation);
#              /metrics scraped before and after (hash time measured in the run)
#     alone    password logins alone, open loop at OVERLOAD_RATE/s over 2048
#              connections, 20 s (enough connections that none is still
#              waiting for its previous answer when its next request is due)
#     idle     refresh grants alone, open loop at REFRESH_RATE (default 1000)/s, 20 s
#     overload the same password overload for 22 s and, from 1 s into it, the
#              same refresh load for 20 s (both timed with --start-at, so the
#              refresh window holds neither generator's setup, such as the
#              overload's 2048 connections being opened)
#     sat2     saturation again, as sat: the accepted rates are compared with
#              the mean of sat and sat2, which cancels a steady drift of the
#              machine's speed over the run
#   LOADER_NICE=-10 runs the load generators at that nice value, ahead of
#   the server's request threads (root only): their own pacing then waits
#   less for a core, which a real client on another machine would not.
#   OVERLOAD_LOADER="--threads 1 --pacer runtime" (any extra arguments) is
#   given to the password overload's generator only: one runtime thread
#   timed by the runtime's timer costs the shared cores less CPU than the
#   default pacer thread and two runtime threads (a real client's CPU
#   would not come off the server's), at up to a millisecond of send lag,
#   which is in its latencies.
#   Each scrape also takes the token log's metrics, and the machine's
#   /proc/stat cpu line (its steal column shows a host that took the
#   vCPUs away).
#   Results go to runs/LABEL/ under $BENCH_DIR (default /tmp/bench), which holds
#   `ropc` and `ropc-loadtest` (copied from target/release) and CONFIGDIR.
#   Summary: overload-report.py runs/LABEL.
set -u
export LC_ALL=C   # decimal points for awk and bc
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; C=$2; RATE=$3; RR=${4:-1000}; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
M=http://127.0.0.1:18443/metrics
LT="nice -n ${LOADER_NICE:-0} ./ropc-loadtest run --url $URL --client-secret-file $C/client-secret --users 200 --quiet"
scrape() { curl -s $M | grep -E '^ropc_(hash_(duration_seconds_(sum|count)|completed_total|shed_total|shed_wait_total|workers)|requests_total\{endpoint="token"|token_store|token_log)' > $1
  grep '^cpu ' /proc/stat >> $1; date -u +%T.%N >> $1; }
fresh_store $C; ./ropc serve --config $C/ropc.toml > $D/server.log 2>&1 &
SP=$!
until curl -s -o /dev/null $M; do sleep 0.1; done
$LT --connections 16 --duration 3 > /dev/null   # warm-up: every worker has its memory
idle_wait
echo "sat start $(date -u +%T) $(uptime)" > $D/times
scrape $D/scrape-sat-start.txt
$LT --connections 16 --duration 20 --json $D/sat.json > $D/sat.txt
scrape $D/scrape-sat-end.txt
idle_wait
echo "alone start $(date -u +%T) $(uptime)" >> $D/times
scrape $D/scrape-alone-start.txt
$LT ${OVERLOAD_LOADER:-} --rate $RATE --connections 2048 --duration 20 --json $D/alone.json > $D/alone.txt
scrape $D/scrape-alone-end.txt
idle_wait
echo "idle start $(date -u +%T) $(uptime)" >> $D/times
$LT --scenario refresh --rate $RR --connections 64 --duration 20 --json $D/idle.json > $D/idle.txt
idle_wait
echo "overload start $(date -u +%T) $(uptime)" >> $D/times
scrape $D/scrape-over-start.txt
T=$(date +%s.%N | awk '{printf "%.3f", $1 + 4}')
$LT ${OVERLOAD_LOADER:-} --rate $RATE --connections 2048 --start-at $T --duration 22 --json $D/overload.json > $D/overload.txt &
OP=$!
$LT --scenario refresh --rate $RR --connections 64 --start-at $(echo "$T + 1" | bc) --duration 20 \
  --json $D/refresh.json > $D/refresh.txt &
RP=$!
wait $RP $OP
grep -h "after --start-at" $D/overload.txt $D/refresh.txt >> $D/times   # a late start, if any
scrape $D/scrape-over-end.txt
idle_wait
echo "sat2 start $(date -u +%T) $(uptime)" >> $D/times
scrape $D/scrape-sat2-start.txt
$LT --connections 16 --duration 20 --json $D/sat2.json > $D/sat2.txt
scrape $D/scrape-sat2-end.txt
echo "end $(date -u +%T) $(uptime)" >> $D/times
grep -c . $D/server.log >> $D/times
kill $SP; wait $SP
