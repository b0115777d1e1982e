#!/bin/bash
# usage: dpop-refresh-run.sh
#   Refresh grants with and without a DPoP proof (RFC 9449, Ed25519) on
#   each, alternating, 3 rounds of 10 s after a 3 s warm-up, a fresh server
#   each; the server on one core (taskset -c 0), the loader on the other.
#   With --dpop every proof is signed before the measured run starts, so the
#   loader signs nothing while it measures; the server verifies each proof
#   and records its jti. jo/ is `ropc-loadtest fixture --dir jo --users 200
#   --m-cost 256 --t-cost 1`. Run from $BENCH_DIR (default /tmp/bench),
#   which holds `ropc` and `ropc-loadtest`; results in runs/dpop/.
cd "${BENCH_DIR:-/tmp/bench}"; mkdir -p runs/dpop
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
for round in 1 2 3; do for mode in bearer dpop; do
  rm -f jo/ropc-tokens.wal*
  taskset -c 0 ./ropc serve --config jo/ropc.toml > runs/dpop/$mode-$round.log 2>&1 &
  SP=$!
  until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done
  flags=(); [ "$mode" = dpop ] && flags=(--dpop --dpop-presigned 250000)
  common=(--url $URL --client-secret-file jo/client-secret --users 200 --scenario refresh --connections 32 --quiet)
  taskset -c 1 ./ropc-loadtest run "${common[@]}" "${flags[@]}" --duration 3 > /dev/null
  taskset -c 1 ./ropc-loadtest run "${common[@]}" "${flags[@]}" --duration 10 --server-pid $SP \
    --json runs/dpop/$mode-$round.json > runs/dpop/$mode-$round.txt
  kill $SP; wait $SP
done; done
for f in runs/dpop/*.json; do
  python3 -c "import json,sys; r=json.load(open('$f')); print('$f', round(r['throughput_rps']), r.get('errors'), r['latency_ms']['p99'] if 'latency_ms' in r else '')"
done
