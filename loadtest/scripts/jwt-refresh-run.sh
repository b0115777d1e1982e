#!/bin/bash
# usage: jwt-refresh-run.sh
#   Refresh grants with the server on one core (taskset -c 0) and the loader
#   on the other: opaque (jo/), EdDSA JWT (jj/) and ES256 JWT (je/),
#   alternating, 3 rounds of 10 s after a 3 s warm-up, a fresh server each.
#   jo/ is `ropc-loadtest fixture --dir jo --users 200 --m-cost 256
#   --t-cost 1`; jj/ and je/ add `access_token_format = "jwt"` to the client
#   and `[jwt] algorithm = "EdDSA"` or `"ES256"`. --server-pid gives the
#   server's requests per CPU second (runs/jwt/*.json, `server`).
#   Run from $BENCH_DIR (default /tmp/bench), which holds `ropc` and
#   `ropc-loadtest`.
cd "${BENCH_DIR:-/tmp/bench}"; mkdir -p runs/jwt
for round in 1 2 3; do for c in jo jj je; do
  rm -f $c/ropc-tokens.wal*
  taskset -c 0 ./ropc serve --config $c/ropc.toml > runs/jwt/$c-$round.log 2>&1 &
  SP=$!
  until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done
  taskset -c 1 ./ropc-loadtest run --url http://127.0.0.1:18443/oauth/v2/oauth-token --client-secret-file $c/client-secret --users 200 --scenario refresh --connections 32 --duration 3 --quiet > /dev/null
  taskset -c 1 ./ropc-loadtest run --url http://127.0.0.1:18443/oauth/v2/oauth-token --client-secret-file $c/client-secret --users 200 --scenario refresh --connections 32 --duration 10 --quiet --server-pid $SP --json runs/jwt/$c-$round.json > runs/jwt/$c-$round.txt
  kill $SP; wait $SP
done; done
