#!/bin/bash
# usage: log-cost-run.sh LABEL OLD_BIN NEW_BIN [ROUNDS]
#   client_credentials with the server on core 0 and the loader on core 1,
#   32 keep-alive connections, 10 s after a 3 s warm-up, the server's log to
#   a file: OLD_BIN and NEW_BIN (two `ropc` builds), each at the default
#   level (info) and with RUST_LOG=off, and bare hyper (./bare_hyper, from
#   `cargo build --release -p ropc-loadtest --examples`) beside them; the
#   five alternate within each of ROUNDS (default 4) rounds.
#   `--server-pid` gives requests per server CPU second (runs/LABEL/*.json,
#   `server`). jo/ is `ropc-loadtest fixture --dir jo --users 200 --m-cost
#   256 --t-cost 1`. Run from $BENCH_DIR (default /tmp/bench), which holds
#   `ropc-loadtest`, `bare_hyper`, jo/ and the two builds.
set -u
cd "${BENCH_DIR:-/tmp/bench}"
L=$1; OLD=$2; NEW=$3; ROUNDS=${4:-4}; D=runs/$L; mkdir -p $D
LT="taskset -c 1 ./ropc-loadtest run --url http://127.0.0.1:18443/oauth/v2/oauth-token --client-secret-file jo/client-secret --scenario client-credentials --connections 32 --quiet"
for round in $(seq $ROUNDS); do for c in old-info old-off new-info new-off bare; do
  rm -f jo/ropc-tokens.wal*
  case $c in
    old-info) taskset -c 0 $OLD serve --config jo/ropc.toml > $D/$c-$round.log 2>&1 & ;;
    old-off) RUST_LOG=off taskset -c 0 $OLD serve --config jo/ropc.toml > $D/$c-$round.log 2>&1 & ;;
    new-info) taskset -c 0 $NEW serve --config jo/ropc.toml > $D/$c-$round.log 2>&1 & ;;
    new-off) RUST_LOG=off taskset -c 0 $NEW serve --config jo/ropc.toml > $D/$c-$round.log 2>&1 & ;;
    bare) taskset -c 0 ./bare_hyper --listen 127.0.0.1:18443 > $D/$c-$round.log 2>&1 & ;;
  esac
  SP=$!
  until curl -s -o /dev/null -X POST http://127.0.0.1:18443/oauth/v2/oauth-token; do sleep 0.1; done
  $LT --duration 3 > /dev/null
  $LT --duration 10 --server-pid $SP --json $D/$c-$round.json > $D/$c-$round.txt
  kill $SP; wait $SP
  # Keep the line count, not 100 MB of log.
  if [ "$(stat -c %s $D/$c-$round.log)" -gt 1000000 ]; then wc -l < $D/$c-$round.log > $D/$c-$round.lines; rm $D/$c-$round.log; fi
done; done
python3 - "$D" <<'PY'
import json, glob, sys, collections
d = collections.defaultdict(list)
for f in sorted(glob.glob(f"{sys.argv[1]}/*.json")):
    r = json.load(open(f)); c = f.split('/')[-1].rsplit('-', 1)[0]
    d[c].append((r['throughput_rps'], r['server']['requests_per_cpu_sec']))
mean = lambda c, i: sum(x[i] for x in d[c]) / len(d[c])
for c in d:
    print(f"{c}: {mean(c, 0):.0f} req/s, {mean(c, 1):.0f} per server CPU s ({len(d[c])} rounds)")
for b in ("old", "new"):
    print(f"{b}: info / off per CPU s {mean(b + '-info', 1) / mean(b + '-off', 1):.3f}; "
          f"info / bare: throughput {mean(b + '-info', 0) / mean('bare', 0):.3f}, per CPU s {mean(b + '-info', 1) / mean('bare', 1):.3f}")
PY
