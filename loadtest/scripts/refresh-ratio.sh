#!/bin/bash
# usage: refresh-ratio.sh LABEL ROUNDS
#   Refresh throughput against the bare hyper baseline, server pinned to core 1,
#   load generator to core 0, keep-alive, 32 connections, 10 s per run, each run
#   after both cores were >= 90 % idle for 3 s, alternating per round:
#     bare-lt    ropc-loadtest client-credentials against examples/bare_hyper
#     ropc-lt    ropc-loadtest refresh against ropc (lt/: rotation on, the default)
#     bare-wrk   wrk -t1 -c32 against bare_hyper (post.lua)
#     ropc-wrk   wrk -t1 -c32 against ropc with one refresh token replayed
#                (lt-norot/: lt/ with rotate_refresh_tokens = false)
#   $BENCH_DIR (default /tmp/bench) holds ropc, ropc-loadtest, bare_hyper,
#   post.lua, lt/ and lt-norot/. Results: runs/LABEL/.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ROUNDS=${2:-3}; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
BURL=http://127.0.0.1:18080/oauth/v2/oauth-token
start_ropc() { fresh_store $1; taskset -c 1 ./ropc serve --config $1/ropc.toml > $D/server-$2.log 2>&1 & SP=$!
  until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done; }
stop() { kill $1; wait $1 2>/dev/null; }
for r in $(seq $ROUNDS); do
  taskset -c 1 ./bare_hyper --listen 127.0.0.1:18080 > /dev/null 2>&1 & BP=$!; sleep 0.3
  idle_wait; echo "bare-lt-$r $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 ./ropc-loadtest run --url $BURL --scenario client-credentials --client-id loadtest --client-secret x \
    --connections 32 --duration 10 --json $D/bare-lt-$r.json > $D/bare-lt-$r.txt
  idle_wait; echo "bare-wrk-$r $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 wrk -t1 -c32 -d10s -s post.lua $BURL > $D/bare-wrk-$r.txt
  stop $BP
  start_ropc lt lt-$r
  idle_wait; echo "ropc-lt-$r $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 --scenario refresh \
    --connections 32 --duration 10 --json $D/ropc-lt-$r.json > $D/ropc-lt-$r.txt
  stop $SP
  start_ropc lt-norot wrk-$r
  RT=$(curl -s -u "loadtest:$(head -1 lt-norot/client-secret)" -d 'grant_type=password&username=user1&password=pass-1' $URL \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["refresh_token"])')
  AUTH=$(printf 'loadtest:%s' "$(head -1 lt-norot/client-secret)" | base64 -w0)
  printf 'wrk.method = "POST"\nwrk.body = "grant_type=refresh_token&refresh_token=%s"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.headers["Authorization"] = "Basic %s"\n' "$RT" "$AUTH" > $D/refresh.lua
  idle_wait; echo "ropc-wrk-$r $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 wrk -t1 -c32 -d10s -s $D/refresh.lua $URL > $D/ropc-wrk-$r.txt
  curl -s http://127.0.0.1:18443/metrics | grep -E '^ropc_requests_total\{endpoint="token"' > $D/metrics-wrk-$r.txt
  stop $SP
done
