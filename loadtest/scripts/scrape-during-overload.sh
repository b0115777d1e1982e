#!/bin/bash
# usage: scrape-during-overload.sh LABEL [RATE]
#   A fresh `ropc serve --config lt/ropc.toml`, a 15 s password overload (open
#   loop at RATE/s, default 480, 2048 connections), and /metrics scraped for
#   the hash pool and the token endpoint before, 5 s and 10 s into it, and after.
#   $BENCH_DIR (default /tmp/bench) holds ropc, ropc-loadtest and lt/.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; RATE=${2:-480}; D=runs/$L; mkdir -p $D
M=http://127.0.0.1:18443/metrics
scrape() { echo "# $1 $(date -u +%T.%N)"; curl -s $M | grep -E '^ropc_(hash_|requests_total\{endpoint="token")' | grep -v '_bucket'; }
fresh_store lt; ./ropc serve --config lt/ropc.toml > $D/server.log 2>&1 &
SP=$!
until curl -s -o /dev/null $M; do sleep 0.1; done
scrape before > $D/scrapes.txt
./ropc-loadtest run --url http://127.0.0.1:18443/oauth/v2/oauth-token --client-secret-file lt/client-secret \
  --users 200 --rate $RATE --connections 2048 --duration 15 --quiet --json $D/run.json > $D/run.txt &
LP=$!
sleep 5; scrape "5 s in" >> $D/scrapes.txt
sleep 5; scrape "10 s in" >> $D/scrapes.txt
wait $LP
scrape after >> $D/scrapes.txt
kill $SP; wait $SP
