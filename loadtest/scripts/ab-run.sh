#!/bin/bash
# usage: ab-run.sh LABEL ROUNDS A B
#   Two ropc builds (A and B: directories holding `ropc`) compared in the same
#   run, with the bare hyper baseline beside them, alternating the order each
#   round (A B, then B A), each run after both cores were >= 90 % idle for 3 s:
#     bare-R      ropc-loadtest client-credentials against examples/bare_hyper on
#                 core 1, loader on core 0, keep-alive, 32 connections, 10 s
#     X-refresh-R ropc-loadtest refresh against X's ropc on core 1, loader on
#                 core 0, 32 connections, 10 s (lt/: rotation on, token log on)
#     X-cc-R      the same with client-credentials
#     X-sat-R     password logins, closed loop, 16 connections, 20 s, server on
#                 both cores (its hash workers use them), after a 3-s warm-up
#   $BENCH_DIR (default /tmp/bench) holds ropc-loadtest, bare_hyper and lt/ (from
#   `ropc-loadtest fixture --dir lt`, listening on 127.0.0.1:18443); $FIXTURE
#   names another such folder (e.g. one whose config adds `[hash_pool]
#   max_queue_wait_ms = 0`: the closed loop's 16 connections retry a 503 at
#   once, and that storm can starve the nice-19 hash workers). Results go
#   to runs/LABEL/; ab-report.py runs/LABEL prints the table.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ROUNDS=${2:-3}; A=$3; B=$4; D=runs/$L; mkdir -p $D; F=${FIXTURE:-lt}
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
BURL=http://127.0.0.1:18080/oauth/v2/oauth-token
LT="./ropc-loadtest run --url $URL --client-secret-file $F/client-secret --users 200 --quiet"
grep -m1 'model name' /proc/cpuinfo > $D/machine; nproc >> $D/machine; uname -r >> $D/machine
start() { fresh_store $F; $2 $1/ropc serve --config $F/ropc.toml > $D/server-$3.log 2>&1 & SP=$!
  until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done; }
stop() { kill $1; wait $1 2>/dev/null; }
one() { # one() NAME BIN-DIR ROUND
  start $2 "taskset -c 1" $1-$3
  idle_wait; echo "$1-refresh-$3 $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 $LT --scenario refresh --connections 32 --duration 10 --json $D/$1-refresh-$3.json > $D/$1-refresh-$3.txt
  idle_wait; echo "$1-cc-$3 $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 $LT --scenario client-credentials --connections 32 --duration 10 --json $D/$1-cc-$3.json > $D/$1-cc-$3.txt
  stop $SP
  start $2 "" $1-sat-$3
  $LT --connections 16 --duration 3 > /dev/null   # warm-up: every worker has its memory
  idle_wait; echo "$1-sat-$3 $(date -u +%T) $(uptime)" >> $D/times
  $LT --connections 16 --duration 20 --json $D/$1-sat-$3.json > $D/$1-sat-$3.txt
  curl -s http://127.0.0.1:18443/metrics | grep -E '^ropc_hash_duration_seconds_(sum|count)' > $D/$1-sat-$3.hash
  stop $SP; }
for r in $(seq $ROUNDS); do
  taskset -c 1 ./bare_hyper --listen 127.0.0.1:18080 > /dev/null 2>&1 & BP=$!; sleep 0.3
  idle_wait; echo "bare-$r $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 ./ropc-loadtest run --url $BURL --scenario client-credentials --client-id loadtest --client-secret x \
    --connections 32 --duration 10 --quiet --json $D/bare-$r.json > $D/bare-$r.txt
  stop $BP
  if [ $((r % 2)) = 1 ]; then one A $A $r; one B $B $r; else one B $B $r; one A $A $r; fi
done
