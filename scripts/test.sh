#!/usr/bin/env bash
# Runs every test of snapnest: unit tests, the whole flow on the embedded store and
# simulated cloud, the adapters against moto, and the functions under `cargo lambda watch`.
# Installs the pinned tools it needs first (scripts/install-tools.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-tools.sh
export PATH="$root/.tools/venv/bin:$PATH"
# The end-to-end test runs `cargo lambda watch`, which builds the function binaries; build
# them first so it starts at once.
cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast "$@"
