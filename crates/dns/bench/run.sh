#!/usr/bin/env bash
# One-command benchmark of hollow-dns with the shared bench kit's cluster and query mixes,
# measured the way the kit measures its peers (Knot, NSD, unbound, hickory), so the figures
# line up with ../shared/bench/results/.
#
# usage: crates/dns/bench/run.sh
#
# What it does:
#   1. generates the benchmark cluster with the kit's gen_cluster.py (once, into $DATA);
#   2. builds the example `bench_server` in release mode; it parses the Kubernetes YAML
#      (Namespaces, Services, EndpointSlices) into a snapshot and serves it with forwarding off;
#   3. starts it pinned to CPU $SERVER_CPU with $WORKERS UDP worker(s), waits for a correct answer;
#   4. dnsperf (pinned to CPU $LOADGEN_CPU, -c 8 -T 1 -q 200) saturates it with each query set
#      $REPS times; server CPU per query comes from the server threads' schedstat;
#   5. one fixed-rate run at $LAT_QPS q/s with per-query times (dnsperf -v) gives p50/p99/p99.9;
#   6. reports peak and current resident memory, then stops the server by its PID;
#   7. with PEERS (default "ceiling-mmsg knot" when knotd is installed), runs the kit's
#      run_peers.sh for those peers right after, with the same settings, and prints their rows
#      under hollow's: this VM's speed drifts by 2x over a day, so only figures taken in the
#      same minutes compare (the kit's own results/ are from another hour).
#
# Tunables (environment): BUILD (0 = use the built binary) DATA KIT PORT DURATION REPS LAT_QPS LAT_DURATION QUERYSETS WORKERS
#   SERVER_CPU LOADGEN_CPU NICE LAT_FIFO RESULTS PEERS ("" = hollow only)
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
KIT=${KIT:-$ROOT/../shared/bench}
if [ ! -f "$KIT/gen_cluster.py" ]; then
  echo "the benchmark kit is not at $KIT: set KIT to the shared/bench folder" >&2
  exit 1
fi
DATA=${DATA:-/tmp/hollow-dns-bench-data}
PORT=${PORT:-15353}
DURATION=${DURATION:-10}
REPS=${REPS:-3}
LAT_QPS=${LAT_QPS:-20000}
LAT_DURATION=${LAT_DURATION:-10}
QUERYSETS=${QUERYSETS:-mix ndots5 extra}
WORKERS=${WORKERS:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NICE=${NICE:--19}
LAT_FIFO=${LAT_FIFO:-10}
RESULTS=${RESULTS:-/tmp/hollow-dns-bench-results/$(date +%Y%m%d-%H%M%S)}
if [ -z "${PEERS+set}" ]; then
    PEERS=ceiling-mmsg
    command -v knotd >/dev/null && PEERS="$PEERS knot"
fi

log() { echo "[hollow-dns bench] $*" >&2; }
die() { log "$*"; exit 1; }

command -v dnsperf >/dev/null || die "dnsperf missing (apt-get install -y dnsperf)"
command -v dig >/dev/null || die "dig missing (apt-get install -y bind9-dnsutils)"
command -v taskset >/dev/null || die "taskset missing (util-linux)"
if ss -lun "sport = :$PORT" | grep -q ":$PORT"; then die "port $PORT already in use"; fi

if [ ! -f "$DATA/manifest.json" ]; then
    log "generating the benchmark cluster into $DATA"
    python3 "$KIT/gen_cluster.py" --out "$DATA" >/dev/null || die "gen_cluster.py failed"
fi
PROBE_NAME=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["probe"]["a"])' "$DATA/manifest.json")
PROBE_IP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["probe"]["a_ip"])' "$DATA/manifest.json")

if [ "${BUILD:-1}" = 1 ]; then
    log "building bench_server (release)"
    (cd "$ROOT" && cargo build --release -p hollow-dns --example bench_server >&2) || die "build failed"
fi
BINARY=$ROOT/target/release/examples/bench_server
mkdir -p "$RESULTS"

SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

server_cpu_ns() { cat /proc/"$SERVER_PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
memory_kib() { awk -v f="$1:" '$1==f{print $2}' /proc/"$SERVER_PID"/status; }

t0=$(date +%s.%N)
nice -n "$NICE" taskset -c "$SERVER_CPU" "$BINARY" "$DATA/k8s/cluster.yaml" "127.0.0.1:$PORT" "$WORKERS" \
    2> "$RESULTS/server.log" &
SERVER_PID=$!
answer=""
for _ in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$RESULTS/server.log" >&2; die "server exited"; }
    answer=$(dig +short +time=1 +tries=1 -p "$PORT" @127.0.0.1 "$PROBE_NAME" A 2>/dev/null | head -1)
    [ "$answer" = "$PROBE_IP" ] && break
    sleep 0.2
done
[ "$answer" = "$PROBE_IP" ] || die "server never answered $PROBE_NAME with $PROBE_IP"
ready_s=$(echo "$(date +%s.%N) - $t0" | bc)
log "ready in ${ready_s}s: $(head -1 "$RESULTS/server.log")"
idle_rss=$(memory_kib VmRSS)

saturate() {  # QUERYSET REP -> "qps lost_pct us_per_query server_cpu_pct"
    local file=$DATA/queries/$1.txt out=$RESULTS/$1.$2.txt before after
    before=$(server_cpu_ns)
    timeout $((DURATION + 30)) nice -n "$NICE" taskset -c "$LOADGEN_CPU" \
        dnsperf -s 127.0.0.1 -p "$PORT" -d "$file" -c 8 -T 1 -q 200 -l "$DURATION" > "$out" 2>&1
    after=$(server_cpu_ns)
    awk -v ns=$((after - before)) '
        /Queries per second/ {qps = $4}
        /Queries completed/ {done = $3}
        /Queries lost/ {gsub(/[()%]/, "", $4); lost = $4}
        /Run time/ {runtime = $4}
        END {printf "%.0f %s %.2f %.0f\n", qps, lost, (done > 0 ? ns / 1000 / done : 0), ns / 1e9 * 100 / (runtime > 0 ? runtime : 1)}' "$out"
}

median() { sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }

printf "queryset\trep\tqps\tlost_pct\tus_per_query\tserver_cpu_pct\n" > "$RESULTS/runs.tsv"
for set in $QUERYSETS; do
    [ -f "$DATA/queries/$set.txt" ] || { log "no query set $set"; continue; }
    for rep in $(seq 1 "$REPS"); do
        result=$(saturate "$set" "$rep")
        log "$set #$rep: qps lost% us/q srv% = $result"
        echo "$set $rep $result" | tr ' ' '\t' >> "$RESULTS/runs.tsv"
    done
done

first=${QUERYSETS%% *}
sched=""
if [ "$LAT_FIFO" -gt 0 ] && chrt -a -f -p "$LAT_FIFO" "$SERVER_PID" >/dev/null 2>&1; then sched="chrt -f $LAT_FIFO"; fi
timeout $((LAT_DURATION + 30)) $sched nice -n "$NICE" taskset -c "$LOADGEN_CPU" dnsperf -s 127.0.0.1 -p "$PORT" \
    -d "$DATA/queries/$first.txt" -c 8 -T 1 -q 200 -Q "$LAT_QPS" -l "$LAT_DURATION" -v > "$RESULTS/latency.raw" 2>&1
[ -n "$sched" ] && chrt -a -o -p 0 "$SERVER_PID" >/dev/null 2>&1
latency=$(grep '^> ' "$RESULTS/latency.raw" | awk '{print $NF}' | sort -g | awk '
    {v[NR] = $1}
    END {if (NR == 0) {print "NA NA NA NA"; exit}
         printf "%.3f %.3f %.3f %.3f\n", v[int(NR*0.5)+1]*1000, v[int(NR*0.9)+1]*1000, v[int(NR*0.99)+1]*1000, v[int(NR*0.999)+1]*1000}')
lat_qps=$(awk '/Queries per second/{printf "%.0f", $4}' "$RESULTS/latency.raw")
grep -v '^> ' "$RESULTS/latency.raw" > "$RESULTS/latency.summary.txt"; rm -f "$RESULTS/latency.raw"
hwm=$(memory_kib VmHWM); rss=$(memory_kib VmRSS)
stop_server

sel() { awk -v q="$1" -v c="$2" -F'\t' '$1==q {print $c}' "$RESULTS/runs.tsv"; }
{
    echo "# hollow-dns $(date -Is), $(nproc) CPUs, server on cpu$SERVER_CPU with $WORKERS UDP worker(s), dnsperf on cpu$LOADGEN_CPU"
    echo "# dnsperf -c 8 -T 1 -q 200 -l $DURATION x$REPS; latency at -Q $LAT_QPS -l $LAT_DURATION${sched:+ (SCHED_FIFO $LAT_FIFO)}"
    printf "%-10s %7s %9s %9s %7s %6s %9s %7s %7s %7s %7s %8s %8s %8s\n" \
        set ready_s qps best us_q srv% lat_qps p50_ms p90_ms p99_ms p999_ms hwm_MiB rss_MiB idle_MiB
    for set in $QUERYSETS; do
        [ -n "$(sel "$set" 3)" ] || continue
        lat="- - - -"; lq="-"
        [ "$set" = "$first" ] && { lat=$latency; lq=$lat_qps; }
        read -r p50 p90 p99 p999 <<< "$lat"
        printf "%-10s %7.2f %9s %9s %7s %6s %9s %7s %7s %7s %7s %8.1f %8.1f %8.1f\n" "$set" "$ready_s" \
            "$(sel "$set" 3 | median)" "$(sel "$set" 3 | sort -g | tail -1)" "$(sel "$set" 5 | median)" \
            "$(sel "$set" 6 | median)" "$lq" "$p50" "$p90" "$p99" "$p999" \
            "$(echo "$hwm / 1024" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$(echo "$idle_rss / 1024" | bc -l)"
    done
} > "$RESULTS/summary.txt"
cat "$RESULTS/summary.txt"

if [ -n "$PEERS" ]; then
    log "peers in the same minutes: $PEERS"
    # shellcheck disable=SC2086
    DATA=$DATA PORT=$PORT DURATION=$DURATION REPS=$REPS LAT_QPS=$LAT_QPS LAT_DURATION=$LAT_DURATION \
        QUERYSETS=$first SERVER_CPU=$SERVER_CPU LOADGEN_CPU=$LOADGEN_CPU NICE=$NICE LAT_FIFO=$LAT_FIFO \
        RESULTS=$RESULTS/peers timeout 1200 bash "$KIT/run_peers.sh" $PEERS > "$RESULTS/peers.log" 2>&1 \
        || log "run_peers.sh failed: see $RESULTS/peers.log"
    if [ -f "$RESULTS/peers/summary.txt" ]; then
        echo "# the same query set against the kit's peers, right after (us_q = server CPU per query):"
        grep -E '^(peer|ceiling|knot|nsd|unbound|hickory)' "$RESULTS/peers/summary.txt"
    fi
fi
log "results in $RESULTS"
