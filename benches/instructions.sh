#!/usr/bin/env bash
# Instructions the server executes per call, counted by valgrind (cachegrind). Unlike time,
# the count barely moves with what else runs on the machine, so it is the figure to compare
# two builds by on a shared or virtual host (docs/performance-log.md, "Counting instructions").
#
# Runs examples/perf three times against the release binary under cachegrind, CALLS calls
# per scenario: the Health floor alone, the floor alone with twice the calls, and the floor
# with SCENARIO. The first two give the floor per call and the start-up; the third, less
# both, gives the scenario's. User-space instructions only: the kernel's TCP work is not
# counted. valgrind runs SHA-256 without the CPU's SHA extensions, so a token's hash counts
# for tens of thousands of instructions here against about a thousand on the hardware.
#
# Usage: benches/instructions.sh [SCENARIO] [CALLS]    (default: check_cached 5000)
# AUTHZ_BIN=path compares another build of the server (the load generator stays the same).
# METRICS=1 serves the metrics during the scenario, as deployments do (each decision counted).
# CACHE_SIM=1 also simulates the caches (valgrind's model of this machine's): the level-1
# misses per call, instruction and data, reads and writes, which barely move from run to
# run, as the count does.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v valgrind >/dev/null; then
  apt-get install -y -q valgrind >/dev/null
fi
scenario=${1:-check_cached}
calls=${2:-5000}
cargo build --release --bin smart-authz --example perf
binary=$(realpath "${AUTHZ_BIN:-target/release/smart-authz}")
cache_sim=no
metrics=
[ "${METRICS:-0}" = 1 ] && metrics=--metrics
[ "${CACHE_SIM:-0}" = 1 ] && cache_sim=yes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The load generator stops its server with SIGKILL, which would lose the count: the wrapper
# runs the server in the background, and `count` stops it with SIGTERM once the run is over.
cat >"$work/server" <<EOF
#!/bin/sh
valgrind --tool=cachegrind --cache-sim=$cache_sim --cachegrind-out-file="\$COUNT_FILE" "$binary" "\$@" &
echo \$! >"\$COUNT_FILE.pid"
wait
EOF
chmod +x "$work/server"

# count ONLY CALLS: the events of one whole run of the server (instructions, then with
# CACHE_SIM=1: I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw), space-separated.
count() {
  export COUNT_FILE="$work/$1-$2.out"
  AUTHZ_BIN="$work/server" target/release/examples/perf --only "$1" --no-memory \
    --calls "$2" --seconds 100000 $metrics >"$work/perf.log" 2>&1 || { cat "$work/perf.log" >&2; exit 1; }
  local pid
  pid=$(cat "$COUNT_FILE.pid")
  kill -TERM "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"
    echo "the server did not stop within 30 s of SIGTERM" >&2
    exit 1
  fi
  awk '/^summary:/ { $1 = ""; print substr($0, 2) }' "$COUNT_FILE"
}

floor_once=$(count health_floor "$calls")
floor_twice=$(count health_floor $((calls * 2)))
with_scenario=$(count "$scenario" "$calls")
awk -v calls="$calls" -v once="$floor_once" -v twice="$floor_twice" -v with="$with_scenario" \
  -v scenario="$scenario" 'BEGIN {
    n = split(once, o, " "); split(twice, t, " "); split(with, w, " ")
    floor = (t[1] - o[1]) / calls
    start = o[1] - calls * floor
    own = (w[1] - o[1]) / calls
    printf "start-up and warm-up     %12.0f instructions\n", start
    printf "health_floor             %12.0f instructions per call\n", floor
    printf "%-24s %12.0f instructions per call, %.2fx the floor\n", scenario, own, own / floor
    if (n == 9) {
      # Fields: 2 I1mr, 5 D1mr, 8 D1mw.
      printf "level-1 misses per call  %12s %12s %12s\n", "instruction", "data read", "data write"
      printf "%-24s %12.0f %12.0f %12.0f\n", "health_floor", (t[2] - o[2]) / calls,
        (t[5] - o[5]) / calls, (t[8] - o[8]) / calls
      printf "%-24s %12.0f %12.0f %12.0f\n", scenario, (w[2] - o[2]) / calls,
        (w[5] - o[5]) / calls, (w[8] - o[8]) / calls
    }
  }'
