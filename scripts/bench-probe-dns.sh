#!/usr/bin/env bash
# Readiness → DNS benchmark (issue 6, "Speed"): the delay from a readiness probe's outcome
# changing to the cluster DNS answer changing, beyond the probe period (goal: p99 <= 50 ms).
#
# Builds the release binary, runs `hollow up` on a temporary data directory with free
# loopback ports, creates a headless service over PODS pods (a StatefulSet of `sleep`
# processes whose exec readiness probe, every second with both thresholds at 1, passes while
# the pod's `down` file is absent and logs the instant it first sees a change), then flips
# those files FLIPS times and measures, for each flip, from the probe's observation to the
# first DNS answer that reflects it (examples/probe_dns_latency.rs). Stops hollow and every
# pod process it started, by PID, at the end.
#
#   scripts/bench-probe-dns.sh                  # 16 pods, 120 flips, 4 in flight
#   PODS=20 FLIPS=200 CONCURRENT=8 scripts/bench-probe-dns.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PODS=${PODS:-16}
FLIPS=${FLIPS:-120}
CONCURRENT=${CONCURRENT:-4}

for tool in kubectl ss; do
    command -v "$tool" >/dev/null || { echo "bench-probe-dns: $tool is required" >&2; exit 1; }
done

echo "building (release)..."
cargo build --release -q -p hollow --bin hollow --example probe_dns_latency
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
hollow="$target_dir/release/hollow"
measure="$target_dir/release/examples/probe_dns_latency"

data=$(mktemp -d "${TMPDIR:-/tmp}/hollow-bench-probe-dns.XXXXXX")
hollow_pid=""

# Pod processes lead their own process groups; their PID files name them.
kill_pods() {
    local file pid
    for file in "$data"/agent/pods/*/containers/*.pid; do
        [ -e "$file" ] || continue
        read -r pid _ < "$file" || continue
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    if [ -n "$hollow_pid" ] && kill -0 "$hollow_pid" 2>/dev/null; then
        kill -TERM "$hollow_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$hollow_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$hollow_pid" 2>/dev/null || true
        wait "$hollow_pid" 2>/dev/null || true
    fi
    kill_pods
    if [ "$status" -ne 0 ] && [ -f "$data/hollow.log" ]; then
        echo "--- last lines of the hollow log ---" >&2
        tail -n 30 "$data/hollow.log" >&2
    fi
    rm -rf "$data"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on (TCP or UDP).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 30000))
        if ! ss -Hlntu | awk '{print $5}' | grep -q ":$port\$"; then
            echo "$port"
            return
        fi
    done
}
api_port=$(free_port)
dns_port=$(free_port)
while [ "$dns_port" = "$api_port" ]; do dns_port=$(free_port); done

"$hollow" up --data-dir "$data" --api-listen "127.0.0.1:$api_port" \
    --dns-listen "127.0.0.1:$dns_port" --upstream none >"$data/hollow.log" 2>&1 &
hollow_pid=$!
export KUBECONFIG="$data/kubeconfig"

deadline=$((SECONDS + 60))
until [ -f "$KUBECONFIG" ] && kubectl get namespaces >/dev/null 2>&1; do
    kill -0 "$hollow_pid" 2>/dev/null || { echo "hollow up exited" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "the API server never became ready" >&2; exit 1; }
    sleep 0.2
done

# The probe passes while ./down is absent; when its outcome differs from its last run it
# appends "<1 ready|0 not> <seconds.nanoseconds>" to ./probe.log, the instant it saw it.
probe='if [ -e down ]; then now=0; else now=1; fi
read -r last 2>/dev/null < seen || last=
if [ "$now" != "$last" ]; then echo "$now $(date +%s.%N)" >> probe.log; echo "$now" > seen; fi
[ "$now" = 1 ]'

kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata:
  name: bench
spec:
  clusterIP: None
  selector:
    app: bench
  ports:
  - name: none
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: bench
spec:
  serviceName: bench
  replicas: $PODS
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: bench
  template:
    metadata:
      labels:
        app: bench
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleeper
        image: busybox
        command: ["sleep", "100000"]
        readinessProbe:
          periodSeconds: 1
          successThreshold: 1
          failureThreshold: 1
          exec:
            command:
            - sh
            - -c
            - |
$(printf '%s\n' "$probe" | sed 's/^/              /')
EOF

echo "waiting for $PODS pods to be ready..."
deadline=$((SECONDS + 120))
while :; do
    ready=$(kubectl get pods -l app=bench \
        -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' \
        | grep -c '^True$' || true)
    [ "$ready" -ge "$PODS" ] && break
    [ "$SECONDS" -lt "$deadline" ] || { echo "only $ready of $PODS pods became ready" >&2; exit 1; }
    sleep 0.5
done
kubectl get pods -l app=bench -o json >"$data/pods.json"

echo "machine load before measuring: $(uptime)"
timeout 400 "$measure" "127.0.0.1:$dns_port" bench.default.svc.cluster.local \
    "$data/pods.json" "$data/agent/pods" "$FLIPS" "$CONCURRENT"
echo "machine load after measuring: $(uptime)"
