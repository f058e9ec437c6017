#!/usr/bin/env bash
# Runs every test of the workspace: unit, integration and end to end (real kubectl, dig).
# This is the README's test command, and what CI runs after fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-tools.sh
cargo test --workspace --locked --no-fail-fast "$@"
