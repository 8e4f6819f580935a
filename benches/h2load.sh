#!/usr/bin/env bash
# Confirms the gRPC floor, the floor carrying the token's bytes and the cached CheckAccess
# of docs/performance.md with an independent load generator: h2load, from Debian's
# nghttp2-client (installed here when missing), sending pre-encoded gRPC frames to the
# release binary, with the server's CPU per call, how busy it was, and the median and 99th
# percentile of the cached CheckAccess's request times (h2load's --log-file). The server runs on
# CPU 0, h2load on CPU 1. Usage: benches/h2load.sh [REQUESTS] (default 200000).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v h2load >/dev/null; then
  apt-get install -y -q nghttp2-client >/dev/null
fi
cargo build --release --bin smart-authz --example perf
exec target/release/examples/perf --h2load --calls "${1:-200000}"
