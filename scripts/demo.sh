#!/usr/bin/env bash
# Backs up the demo service instance si-demo, polls it to success, restores it in place
# and prints both records — on the embedded store and the simulated cloud (no AWS needed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo run --quiet -p snapnest-e2e --bin demo
