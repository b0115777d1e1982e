#!/bin/bash
# usage: cpu-per-request.sh LABEL ROUNDS SCENARIO A B [REQUESTS]
#   The server's own CPU time per request, for two ropc builds (A and B:
#   directories holding `ropc`) alternating each round: the server on core 1,
#   ropc-loadtest on core 0, keep-alive, 32 connections, REQUESTS (default
#   300000) requests of SCENARIO (refresh, client-credentials, ...). CPU time
#   (utime + stime of the server process, from /proc) leaves out the time a
#   shared host takes the vCPU away (steal), which throughput does not: it
#   compares builds on a noisy host where requests/s cannot. $BENCH_DIR
#   (default /tmp/bench) holds ropc-loadtest and lt/. Prints one line per run:
#   build, round, requests, server CPU seconds, microseconds per request.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ROUNDS=$2; SCEN=$3; A=$4; B=$5; N=${6:-300000}; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
TICK=$(getconf CLK_TCK)
run() { # run NAME BIN-DIR ROUND
  fresh_store lt; taskset -c 1 $2/ropc serve --config lt/ropc.toml > $D/server-$1-$3.log 2>&1 & SP=$!
  until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done
  taskset -c 0 ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 --quiet \
    --scenario $SCEN --connections 32 --requests 2000 > /dev/null   # setup and warm-up, not measured
  idle_wait
  before=$(awk '{print $14 + $15}' /proc/$SP/stat)
  taskset -c 0 ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 --quiet \
    --scenario $SCEN --connections 32 --requests $N --duration 120 --json $D/$1-$3.json > $D/$1-$3.txt
  after=$(awk '{print $14 + $15}' /proc/$SP/stat)
  kill $SP; wait $SP 2>/dev/null
  python3 - "$1" "$3" "$D/$1-$3.json" "$before" "$after" "$TICK" <<'PY'
import json, sys
name, rnd, path, before, after, tick = sys.argv[1:]
j = json.load(open(path))
cpu = (int(after) - int(before)) / int(tick)
n = j["successes"]
print(f"{name} {rnd} {n} {cpu:.2f} {cpu / n * 1e6:.2f}")
PY
}
for r in $(seq $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then run A $A $r; run B $B $r; else run B $B $r; run A $A $r; fi
done | tee $D/cpu.txt
