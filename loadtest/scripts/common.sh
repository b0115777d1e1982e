# Shared by the bench drivers in this folder; sourced, not run. They are
# run from $BENCH_DIR with this file copied beside them.

# Waits until both cores were >= 90 % idle over 3 s (at most 180 s); logs a
# give-up to $D/times.
idle_wait() {
  for i in $(seq 60); do
    a=($(grep '^cpu ' /proc/stat)); sleep 3; b=($(grep '^cpu ' /proc/stat))
    tot=0; for k in 1 2 3 4 5 6 7 8; do tot=$((tot + b[k] - a[k])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    [ $((idle * 100)) -ge $((tot * 90)) ] && return 0
  done; echo "idle_wait gave up" >> $D/times; }

# Deletes the token log of the fixture in $1, so that a fresh server starts
# empty: a log grown by earlier runs (millions of refresh tokens) costs
# seconds of replay and compaction that would weigh on the next run.
fresh_store() { rm -f "$1/ropc-tokens.wal" "$1/ropc-tokens.wal.corrupt"; }
