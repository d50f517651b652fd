#!/usr/bin/env bash
# Runs the benchmark and prints its figures as `name: value` lines: every scenario, or the
# ones named (fanout, ec2-per-snapshot, poll, expiry, start-up, operations). Installs the
# pinned tools first (moto, for ec2-per-snapshot) and builds the release function binaries
# the start-up scenario starts.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-tools.sh >&2
export PATH="$root/.tools/venv/bin:$PATH"
functions=()
for dir in functions/*/; do functions+=(-p "$(basename "$dir")"); done
cargo build --release --quiet "${functions[@]}"
# The functions' CloudWatch metric lines (JSON, on stdout) are left out of the figures.
cargo run --release --quiet -p snapnest-e2e -- "${@:-all}" | grep --line-buffered -v '^{"'

