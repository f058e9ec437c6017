#!/usr/bin/env bash
# The API server benchmark (issue 2, "Speed"): creates/s, list time, watch delay, memory per pod.
set -euo pipefail; cd "$(dirname "$0")/.." && exec cargo bench -p hollow-apiserver --bench api "$@"
