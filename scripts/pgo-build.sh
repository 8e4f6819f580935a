#!/usr/bin/env bash
# Builds the release binary with profile-guided optimisation, the way the container image is
# built (Dockerfile). rustc's own method (the rustc book, "Profile-guided Optimization"):
#   1. a build instrumented with -Cprofile-generate, which counts the branches it takes;
#   2. that build serves the load generator's scenarios (examples/perf: every scenario of
#      docs/performance.md, with the memory flood that fills and evicts the cache, then again
#      over TLS and over the Unix socket, all with the server pinned to one CPU and so on its
#      one-thread runtime; then unpinned, on a worker per CPU, as a pod without a CPU limit
#      runs), and writes its counts when it exits on SIGTERM;
#   3. llvm-profdata merges the counts;
#   4. the release build again, with -Cprofile-use: hot code laid out together, inlined and
#      branched by the counts, cold code kept small.
# docs/performance-log.md ("The profile-guided build") has what it gains and what it costs.
#
# Usage: scripts/pgo-build.sh [OUT]        (default: target/pgo/smart-authz)
# llvm-profdata must read the raw profiles of the compiler's LLVM: the toolchain's own
# (`rustup component add llvm-tools`) is taken first, then LLVM_PROFDATA, then any
# llvm-profdata on PATH or under /usr/lib/llvm-*/ that can merge them (Debian's llvm-19 reads
# the format of rustc 1.95's LLVM 22).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/pgo/smart-authz}
host=$(rustc -vV | sed -n 's/^host: //p')
work="$PWD/target/pgo"
profiles="$work/profiles"

# The load generator is an ordinary release build; only the server is instrumented. With
# --target, RUSTFLAGS reach the target's crates and not the build scripts.
cargo build --release --locked --example perf
rm -rf "$profiles"
mkdir -p "$profiles"
# A source edited while this runs gets counts from other code: LLVM drops them (a warning per
# function) and the binary is quietly less optimised. Checked at the end.
started="$work/started"
touch "$started"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$profiles" \
  cargo build --release --locked --bin smart-authz --target "$host" --target-dir "$work/generate"

instrumented="$work/generate/$host/release/smart-authz"
echo "training: examples/perf against the instrumented server (log: $work/training.txt)"
if ! {
  AUTHZ_BIN="$instrumented" target/release/examples/perf --calls 20000 --seconds 8 &&
    AUTHZ_BIN="$instrumented" target/release/examples/perf --tls --no-memory --calls 5000 --seconds 4 &&
    AUTHZ_BIN="$instrumented" target/release/examples/perf --unix --no-memory --calls 5000 --seconds 4 &&
    AUTHZ_BIN="$instrumented" target/release/examples/perf --no-pin --no-memory --calls 5000 --seconds 4
} >"$work/training.txt" 2>&1; then
  tail -n 20 "$work/training.txt" >&2
  echo "the training run failed (log: $work/training.txt)" >&2
  exit 1
fi
if ! compgen -G "$profiles/*.profraw" >/dev/null; then
  echo "the instrumented server wrote no profile into $profiles" >&2
  exit 1
fi

merged="$work/merged.profdata"
candidates=("$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata")
if [ -n "${LLVM_PROFDATA:-}" ]; then candidates+=("$LLVM_PROFDATA"); fi
for name in llvm-profdata llvm-profdata-{30..19}; do
  if command -v "$name" >/dev/null; then candidates+=("$(command -v "$name")"); fi
done
candidates+=(/usr/lib/llvm-*/bin/llvm-profdata)
merger=""
for candidate in "${candidates[@]}"; do
  if [ -x "$candidate" ] && "$candidate" merge -o "$merged" "$profiles" 2>/dev/null; then
    merger=$candidate
    break
  fi
done
if [ -z "$merger" ]; then
  llvm=$(rustc -vV | sed -n 's/^LLVM version: //p')
  echo "no llvm-profdata here reads the raw profiles of LLVM $llvm: run" \
    "'rustup component add llvm-tools', or name one with LLVM_PROFDATA" >&2
  exit 1
fi
echo "merged with $merger"

RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$merged" \
  cargo build --release --locked --bin smart-authz --target "$host" --target-dir "$work/use"
sources=()
for path in src crates build.rs proto Cargo.toml Cargo.lock; do
  if [ -e "$path" ]; then sources+=("$path"); fi
done
changed=$(find "${sources[@]}" -type f -newer "$started" -print -quit)
if [ -n "$changed" ]; then
  echo "$changed (and perhaps more) changed while the profile was taken and used: run again" >&2
  exit 1
fi
install -D -m 0755 "$work/use/$host/release/smart-authz" "$out"
echo "built $out"
