#!/bin/bash
# usage: store-run.sh LABEL ROUNDS
#   The token store's cost, each round measuring every store in turn on a
#   fresh server (same binary, same fixture otherwise), each run after both
#   cores were >= 90 % idle for 3 s:
#     mem     [token_store] durable = false: records in memory only
#     wal     the default: refresh tokens in the write-ahead log, written
#             before answering, fdatasync every 50 ms in the background
#     walsync sync_interval_ms = 0: fdatasync before answering (group commit)
#     redis   kind = "redis", a local redis-server on port 16379 (no
#             persistence, its defaults otherwise)
#   (Odd rounds in this order, even rounds in reverse.) Per store: password logins at saturation (16 connections, 20 s), refresh
#   grants (32 connections, 10 s, rotation on), introspections (32
#   connections, 10 s). Server and load generator are not pinned: the hash
#   pool uses both cores at saturation.
#   $BENCH_DIR (default /tmp/bench) holds ropc, ropc-loadtest and lt/ (the
#   fixture of `ropc-loadtest fixture --dir lt --users 200 --listen
#   127.0.0.1:18443`). Results: runs/LABEL/.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ROUNDS=${2:-3}; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
STORES="${STORES:-mem wal walsync redis}"
for s in $STORES; do
  rm -rf lt-$s; mkdir lt-$s; cp lt/users.htpasswd lt/client-secret lt-$s/
  case $s in
    mem) extra='[token_store]\ndurable = false' ;;
    wal) extra='[token_store]\ndurable = true' ;;
    walsync) extra='[token_store]\ndurable = true\nsync_interval_ms = 0' ;;
    redis) extra='[token_store]\nkind = "redis"\nurl = "redis://127.0.0.1:16379/0"' ;;
  esac
  { cat lt/ropc.toml; printf '\n%b\n' "$extra"; } > lt-$s/ropc.toml
done
redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --logfile $PWD/$D/redis.log
trap 'redis-cli -p 16379 shutdown nosave >/dev/null 2>&1' EXIT
lt() { ./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 "$@"; }
for r in $(seq $ROUNDS); do
  # Odd rounds in the listed order, even rounds reversed, so that a drift
  # over the round does not favour one store.
  order=$STORES; [ $((r % 2)) = 0 ] && order=$(echo $STORES | tr ' ' '\n' | tac | tr '\n' ' ')
  for s in $order; do
    redis-cli -p 16379 flushall > /dev/null
    ./ropc serve --config lt-$s/ropc.toml > $D/server-$s-$r.log 2>&1 & SP=$!
    until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done
    lt --connections 4 --duration 3 > /dev/null   # warm up (client secret memo, hash memory)
    idle_wait; echo "$s-pw-$r $(date -u +%T) $(uptime)" >> $D/times
    curl -s http://127.0.0.1:18443/metrics > $D/metrics-$s-pw-$r-before.txt
    lt --connections 16 --duration 20 --json $D/$s-pw-$r.json > $D/$s-pw-$r.txt
    curl -s http://127.0.0.1:18443/metrics > $D/metrics-$s-pw-$r-after.txt
    idle_wait; echo "$s-refresh-$r $(date -u +%T) $(uptime)" >> $D/times
    lt --scenario refresh --connections 32 --duration 10 --json $D/$s-refresh-$r.json > $D/$s-refresh-$r.txt
    idle_wait; echo "$s-introspect-$r $(date -u +%T) $(uptime)" >> $D/times
    lt --scenario introspect --connections 32 --duration 10 --json $D/$s-introspect-$r.json > $D/$s-introspect-$r.txt
    curl -s http://127.0.0.1:18443/metrics > $D/metrics-$s-$r.txt
    kill $SP; wait $SP 2>/dev/null
  done
done
