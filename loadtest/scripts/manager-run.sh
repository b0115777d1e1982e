#!/bin/bash
# usage: manager-run.sh LABEL ROUNDS BIN-DIR
#   The SQL credential manager against the users file, same run, same
#   argon2 cost: a private PostgreSQL (initdb in $BENCH_DIR/pg, port 15432,
#   fsync off) holds the fixture's 200 users and their hashes, and lt-pg/ is
#   lt/ with the client `loadtest` on `credential_manager = "pg"`
#   (account_cache_ttl = 60). Alternating each round (file first, then pg;
#   the next round pg first), each run after both cores were >= 90 % idle:
#     X-sat-R      password logins, closed loop, 16 connections, 20 s, server
#                  on both cores, after a 3-s warm-up
#     X-refresh-R  refresh grants, server on core 1, loader on core 0, 32
#                  connections, 10 s
#     X-lat-R      password logins open loop at 20/s for 15 s: latency with
#                  an idle pool (p50, p99); pg minus file is the look-up's
#     X-lookup-R   (after the rounds) refreshes at 200/s open loop, server on
#                  core 1, with account_cache_ttl = 0 for pg: each looks its
#                  account up and spends no hash, so pg minus file is the
#                  look-up's latency (p50, p99)
#   Then the database's share of a login and of a refresh: with PostgreSQL's
#   log_statement = all, 50 logins and 50 refreshes with account_cache_ttl
#   = 0, counting the statements it logged (a ping and a query each are a
#   round trip). BIN-DIR holds ropc; $BENCH_DIR (default /tmp/bench) holds
#   ropc-loadtest and lt/ (`ropc-loadtest fixture --dir lt`). Results go to
#   runs/LABEL/; manager-report.py runs/LABEL prints the table.
set -u
. "$(dirname "$0")/common.sh"
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; ROUNDS=${2:-3}; BIN=$3; D=runs/$L; mkdir -p $D
URL=http://127.0.0.1:18443/oauth/v2/oauth-token
LT="./ropc-loadtest run --url $URL --client-secret-file lt/client-secret --users 200 --quiet"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
grep -m1 'model name' /proc/cpuinfo > $D/machine; nproc >> $D/machine; uname -r >> $D/machine
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# The database: the fixture's users, as a legacy table would hold them.
rm -rf pg; mkdir -p pg; [ "$(id -u)" = 0 ] && chown postgres pg
as_pg $PGBIN/initdb -D pg/data -A trust -U postgres --no-sync -E UTF8 > $D/initdb.log
pg_start() { as_pg $PGBIN/pg_ctl -D pg/data -l pg/log -w -o "-p 15432 -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off $1" start > /dev/null; }
pg_stop() { as_pg $PGBIN/pg_ctl -D pg/data -w -m fast stop > /dev/null; }
psql_() { $PGBIN/psql -h 127.0.0.1 -p 15432 -U postgres -d postgres -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
pg_start ""
psql_ -c "CREATE TABLE users (id serial PRIMARY KEY, login text UNIQUE NOT NULL, password text NOT NULL)"
grep -v '^#' lt/users.htpasswd | awk -F: 'NF >= 2 { l = $1; sub(/^[^:]*:/, ""); print l "\t" $0 }' \
  | psql_ -c "COPY users (login, password) FROM STDIN"
[ "$(psql_ -c 'SELECT count(*) FROM users')" = 200 ] || { echo "the users did not load" >&2; exit 1; }

pg_config() { # pg_config DIR TTL
  rm -rf $1; mkdir -p $1; cp lt/users.htpasswd lt/client-secret $1/
  sed 's/^default_scopes = \["read"\]$/default_scopes = ["read"]\ncredential_manager = "pg"/' lt/ropc.toml > $1/ropc.toml
  cat >> $1/ropc.toml <<EOF

[credential_managers.pg]
kind = "sql"
url = "postgres://postgres@127.0.0.1:15432/postgres?sslmode=disable"
query = "SELECT id AS subject, password AS hash FROM users WHERE login = :username"
account_cache_ttl = $2
EOF
  grep -q 'credential_manager = "pg"' $1/ropc.toml || { echo "lt/ropc.toml: no client to point at pg" >&2; exit 1; }; }
pg_config lt-pg 60
pg_config lt-pg0 0

start() { fresh_store $1; $2 $BIN/ropc serve --config $1/ropc.toml > $D/server-$3.log 2>&1 & SP=$!
  until curl -s -o /dev/null http://127.0.0.1:18443/metrics; do sleep 0.1; done; }
stop() { kill $1; wait $1 2>/dev/null; }
one() { # one NAME CONFIG-DIR ROUND
  start $2 "" $1-sat-$3
  $LT --connections 16 --duration 3 > /dev/null
  idle_wait; echo "$1-sat-$3 $(date -u +%T) $(uptime)" >> $D/times
  $LT --connections 16 --duration 20 --json $D/$1-sat-$3.json > $D/$1-sat-$3.txt
  idle_wait; echo "$1-lat-$3 $(date -u +%T) $(uptime)" >> $D/times
  $LT --rate 20 --connections 16 --duration 15 --json $D/$1-lat-$3.json > $D/$1-lat-$3.txt
  curl -s http://127.0.0.1:18443/metrics | grep -E '^ropc_credential_manager_duration_seconds' > $D/$1-lat-$3.metrics
  stop $SP
  start $2 "taskset -c 1" $1-refresh-$3
  idle_wait; echo "$1-refresh-$3 $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 $LT --scenario refresh --connections 32 --duration 10 --json $D/$1-refresh-$3.json > $D/$1-refresh-$3.txt
  stop $SP; }
for r in $(seq $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then one file lt $r; one pg lt-pg $r; else one pg lt-pg $r; one file lt $r; fi
done

# The look-up's own latency: refreshes at 200/s open loop, server on core 1,
# loader on core 0, 10 s; with account_cache_ttl = 0 each pg refresh looks
# its account up (and spends no hash), each file refresh does not.
lookup() { # lookup NAME CONFIG-DIR ROUND
  start $2 "taskset -c 1" $1-lookup-$3
  idle_wait; echo "$1-lookup-$3 $(date -u +%T) $(uptime)" >> $D/times
  taskset -c 0 $LT --scenario refresh --rate 200 --connections 32 --duration 10 --json $D/$1-lookup-$3.json > $D/$1-lookup-$3.txt
  stop $SP; }
for r in $(seq $ROUNDS); do
  if [ $((r % 2)) = 1 ]; then lookup file lt $r; lookup pg lt-pg0 $r; else lookup pg lt-pg0 $r; lookup file lt $r; fi
done

# Round trips: every statement logged, with no account cache.
pg_stop; pg_start "-c log_statement=all -c log_line_prefix=STMT:"
start lt-pg0 "" trips
count() { grep -c 'STMT:LOG:  \(statement\|execute\)' pg/log; }
# What ropc's sockets to the database sent: a round trip is one send.
sent() { ss -tinH state established "( dport = :15432 )" | grep -o 'segs_out:[0-9]*' | cut -d: -f2 | paste -sd+ | sed 's/^$/0/' | bc; }
$LT --connections 1 --requests 5 > /dev/null   # the pool's connection is made, not counted
c0=$(count); s0=$(sent)
$LT --connections 1 --requests 50 > $D/trips-login.txt
c1=$(count); s1=$(sent)
$LT --scenario refresh --connections 1 --requests 51 > $D/trips-refresh.txt
c2=$(count); s2=$(sent)
stop $SP
echo "segments ropc sent to the database per login: $(python3 -c "print(($s1 - $s0) / 50)")" > $D/trips-sent
echo "per refresh (no cache): $(python3 -c "print(($s2 - $s1 - ($s1 - $s0) / 50) / 51)")" >> $D/trips-sent
# The refresh run logs in once first: one login's statements come off.
echo "statements per login: $(python3 -c "print(($c1 - $c0) / 50)")" > $D/trips
echo "statements per refresh (no cache): $(python3 -c "print(($c2 - $c1 - ($c1 - $c0) / 50) / 51)")" >> $D/trips
grep 'STMT:LOG' pg/log | sed 's/.*STMT:LOG:  //' | sort | uniq -c | sort -rn | head -5 >> $D/trips
pg_stop
cat $D/trips $D/trips-sent
