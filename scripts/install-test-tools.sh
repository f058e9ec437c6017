#!/usr/bin/env bash
# Installs the tools hollow's tests drive: dig (bind9-dnsutils) and dnsperf. kubectl ships with
# the machine image (google-cloud-cli, with kubectl.1.27 ... kubectl.1.33 beside it).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v kubectl >/dev/null 2>&1; then
  echo "kubectl is missing: install google-cloud-cli's kubectl (apt-get install kubectl) or put one on PATH" >&2
  exit 1
fi
echo "test tools ready: $(command -v dig) $(command -v kubectl)"
