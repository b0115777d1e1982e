#!/bin/bash
# usage: redis-cost.sh LABEL
#   What one ropc request costs Redis: a fresh redis-server (port 16379, no
#   persistence) behind lt-redis/ (made by store-run.sh), one phase per
#   request kind (password logins at saturation 20 s, refresh 10 s,
#   introspection 10 s), and after each phase Redis's own accounting:
#   INFO commandstats (calls, microseconds per call) and INFO cpu. ropc's
#   ropc_token_store_round_trips_total and request counters are scraped
#   around each phase. Results: runs/LABEL/.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile $PWD/$D/redis.log
trap 'redis-cli -p 16379 shutdown nosave >/dev/null 2>&1' EXIT
until redis-cli -p 16379 ping > /dev/null 2>&1; do sleep 0.1; done
./ropc serve --config lt-redis/ropc.toml > $D/server.log 2>&1 & SP=$!
until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done
lt() { ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 "$@"; }
lt --connections 4 --duration 3 > /dev/null
for phase in password refresh introspect; do
  redis-cli -p 16379 config resetstat > /dev/null
  redis-cli -p 16379 info cpu > $D/cpu-$phase-before.txt
  curl -s http://127.0.0.1:18443/metrics > $D/metrics-$phase-before.txt
  idle_wait; echo "$phase $(date -u +%T) $(uptime)" >> $D/times
  case $phase in
    password) lt --connections 16 --duration 20 --json $D/$phase.json > $D/$phase.txt ;;
    *) lt --scenario $phase --connections 32 --duration 10 --json $D/$phase.json > $D/$phase.txt ;;
  esac
  curl -s http://127.0.0.1:18443/metrics > $D/metrics-$phase-after.txt
  redis-cli -p 16379 info commandstats > $D/commandstats-$phase.txt
  redis-cli -p 16379 info cpu > $D/cpu-$phase.txt
done
kill $SP; wait $SP 2>/dev/null
