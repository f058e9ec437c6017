#!/usr/bin/env bash
# One-command write→answer latency benchmark of hollow-dns (issue #5's "EndpointSlice write
# acknowledged by the API → changed answer on the wire, p99 <= 10 ms").
#
# usage: crates/dns/bench/update_latency.sh
#
# Generates the bench kit's cluster (once, into $DATA), builds the `update_latency` example in
# release mode and runs it: in-process API server loaded with the cluster, the DNS server as a
# child process watching it, CHANGES measured ready-flips idle and again under LOAD_RATE
# slice writes/s. See crates/dns/examples/update_latency.rs for what is measured.
#
# Then, unless HOLLOW_DNS=0, builds the DNS-only `hollow` binary in the `dns-lean` profile (the
# lean deployment build: about 7 minutes the first time on 2 cores) and starts `hollow dns`
# against the same API server to report what the deployed program holds after sync (jemalloc,
# no API server code in the binary; the child above runs on glibc malloc inside the
# benchmark's own binary). HOLLOW_PROFILE=release measures the release build instead.
#
# Tunables (environment): BUILD (0 = use the built binaries) DATA KIT CHANGES LOAD_RATE HOLLOW_DNS
# HOLLOW_PROFILE, and, passed on to the example, LATENCY (0 = memory only) CHURN (slice writes
# after the sync) HOLD.
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}
DATA=${DATA:-/tmp/hollow-dns-bench-data}
export CHANGES=${CHANGES:-300}
export LOAD_RATE=${LOAD_RATE:-100}

log() { echo "[hollow-dns update bench] $*" >&2; }
die() { log "$*"; exit 1; }

if [ ! -f "$DATA/k8s/cluster.yaml" ]; then
  [ -f "$KIT/gen_cluster.py" ] || die "the benchmark kit is not at $KIT: set KIT to the shared/bench folder"
  log "generating the benchmark cluster into $DATA"
  python3 "$KIT/gen_cluster.py" --out "$DATA" >/dev/null || die "gen_cluster.py failed"
fi
if [ "${BUILD:-1}" != 0 ]; then
  (cd "$ROOT" && cargo build --release -p hollow-dns --example update_latency) || die "build failed"
  if [ "${HOLLOW_DNS:-1}" != 0 ]; then
    (cd "$ROOT" && cargo build --profile "${HOLLOW_PROFILE:-dns-lean}" -p hollow --no-default-features) ||
      die "building hollow failed"
  fi
fi
if [ "${HOLLOW_DNS:-1}" != 0 ]; then
  export HOLLOW="$ROOT/target/${HOLLOW_PROFILE:-dns-lean}/hollow"
else
  unset HOLLOW
fi
log "machine load before the run: $(uptime)"
exec timeout 1200 "$ROOT/target/release/examples/update_latency" "$DATA/k8s/cluster.yaml"
