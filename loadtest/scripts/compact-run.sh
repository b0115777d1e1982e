#!/bin/bash
# usage: compact-run.sh LABEL ROUNDS
#   Two builds, $BENCH_DIR/ropc-old and $BENCH_DIR/ropc-new, in turn (odd
#   rounds in the order $ORDER1, default "old new", even rounds $ORDER2,
#   default "new old"), each on a fresh server and an empty token log (the
#   fixture's default store: memory + the log, fdatasync every 50 ms):
#   refresh grants, closed loop, 32 connections, 40 s, so that the log is
#   compacted several times; each run after both cores were >= 90 % idle
#   for 3 s. Then the token log's metrics; the server's log keeps the
#   compaction lines. $BENCH_DIR (default /tmp/bench) holds the binaries,
#   ropc-loadtest, common.sh and the fixture lt/ (as for overload-run.sh).
#   Summary: compact-report.py runs/LABEL.
set -u
export LC_ALL=C
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ROUNDS=$2; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
M=http://127.0.0.1:18443/metrics
for r in $(seq $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then order="${ORDER1:-old new}"; else order="${ORDER2:-new old}"; fi
  for bin in $order; do
    fresh_store lt
    ./ropc-$bin serve --config lt/ropc.toml > $D/server-$bin-$r.log 2>&1 &
    SP=$!
    until curl -s -o /dev/null $M; do sleep 0.1; done
    idle_wait
    echo "$bin $r start $(date -u +%T) $(uptime)" >> $D/times
    ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 --scenario refresh \
      --connections 32 --duration 40 --quiet --json $D/$bin-$r.json > $D/$bin-$r.txt
    curl -s $M | grep -E '^ropc_token_log' > $D/metrics-$bin-$r.txt
    kill $SP; wait $SP
  done
done
echo done >> $D/times
