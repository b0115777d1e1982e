#!/bin/bash
# usage: refresh-run.sh LABEL CONFIGDIR
#   One `--scenario refresh` run (32 connections, 10 s, loader on core 0) on a
#   fresh `ropc serve --config CONFIGDIR/ropc.toml` pinned to core 1. Results go
#   to runs/LABEL/ under $BENCH_DIR (default /tmp/bench), which holds `ropc` and
#   `ropc-loadtest` (copied from target/release) and the config directories.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; C=$2; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
M=http://127.0.0.1:18443/metrics
fresh_store $C; taskset -c 1 ./ropc serve --config $C/ropc.toml > $D/server.log 2>&1 &
SP=$!
until curl -s -o /dev/null $M; do sleep 0.1; done
idle_wait
echo "start $(date -u +%T) $(uptime)" > $D/times
grep '^cpu ' /proc/stat > $D/stat-start
cut -d' ' -f14,15 /proc/$SP/stat >> $D/stat-start
taskset -c 0 ./ropc-loadtest run --url $URL --client-secret-file $C/client-secret --users 200 \
  --scenario refresh --connections 32 --duration 10 --json $D/run.json > $D/run.txt 2> $D/run.err
grep '^cpu ' /proc/stat > $D/stat-end
cut -d' ' -f14,15 /proc/$SP/stat >> $D/stat-end
echo "end $(date -u +%T) $(uptime)" >> $D/times
curl -s $M | grep -E '^ropc_(requests_total|hash_completed_total|token_store_records)' > $D/metrics-end.txt
kill $SP; wait $SP
